"""SparseVLM's calibration (`llava-patch sparsevlm-calibrate`): the scale that meets a layer-averaged
token count on calibration questions, written to a settings file that `settings=` reads back."""

import hashlib
import json

import pytest
import torch

import llava_patch
from llava_patch.calibration import SettingsError, load_sparsevlm_settings
from llava_patch.calibration.sparsevlm import FORMAT, Measurement, calibrate, search_scale
from llava_patch.cli import main
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import random_image

QUESTIONS = ["what is in the image ?", "w1 w2 w3 w4 w5 describe the image", "colour ?", "is the image w7 w8 ?"]
KEEP, TOLERANCE = 24, 0.01  # of the tiny model's 64 visual tokens (4 layers, pruning after 0, 1, 2)


def _calibration(directory, count=6):
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    path = directory / "questions.jsonl"
    with open(path, "w") as file:
        for index in range(count):
            random_image(20 + index, size=(48 + 7 * index, 72)).save(images / f"{index}.png")
            file.write(json.dumps({"question_id": f"q{index}", "image": f"{index}.png",
                                   "text": QUESTIONS[index % len(QUESTIONS)]}) + "\n")
    return path, images


def _arguments(checkpoint, data, images, output, *extra):
    return ["sparsevlm-calibrate", "--model", str(checkpoint), "--data", str(data), "--image-folder", str(images),
            "--keep", str(KEEP), "--output", str(output), "--device", "cpu", "--limit", "5", "--batch-size", "2",
            "--tolerance", str(TOLERANCE), *extra]


@pytest.fixture(scope="module")
def calibrated(tiny_llava_dir, tmp_path_factory):
    """(checkpoint, calibration file, image folder, settings file, the command's stdout/stderr)."""
    directory = tmp_path_factory.mktemp("sparsevlm-calibration")
    data, images = _calibration(directory)
    output = directory / "settings" / f"sparsevlm-{KEEP}.json"
    return tiny_llava_dir, data, images, output, main(_arguments(tiny_llava_dir, data, images, output))


def _layer_means(vlm, handle, data, images, batch_size):
    from PIL import Image

    questions = [json.loads(line) for line in data.read_text().splitlines()][:5]
    means = []
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        inputs = vlm.prepare([Image.open(images / q["image"]).convert("RGB") for q in batch], [q["text"] for q in batch])
        with torch.inference_mode():
            vlm.forward(inputs)
        means += handle.last_equivalent_visual_tokens
    return means


def test_the_calibrated_scale_meets_the_target_and_the_settings_reproduce_it(calibrated, capsys):
    checkpoint, data, images, output, status = calibrated
    assert status == 0
    settings = json.loads(output.read_text())
    assert settings["format"] == FORMAT and settings["format_version"] == 1 and settings["method"] == "sparsevlm"
    assert settings["keep"] == KEEP and settings["bias"] == 0.0 and settings["scale"] > 0 and settings["reached"]
    mean = settings["mean_layer_visual_tokens"]
    assert abs(mean - KEEP) <= TOLERANCE * KEEP
    assert len(settings["per_sample_layer_visual_tokens"]) == 5
    assert mean == pytest.approx(sum(settings["per_sample_layer_visual_tokens"]) / 5)
    assert all(final < 64 for final in settings["per_sample_final_visual_tokens"])
    assert settings["pruning_layers"] == [0, 1, 2] and settings["options"] == {}
    assert settings["model"]["layers"] == 4 and settings["model"]["visual_tokens"] == 64
    assert settings["model"]["source"] == str(checkpoint) and settings["model"]["backend"] == "hf"
    calibration = settings["calibration"]
    assert calibration["question_ids"] == [f"q{i}" for i in range(5)] and calibration["limit"] == 5
    assert calibration["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest() and calibration["file"] == str(data)
    # every trial recorded; the settings are one of them; the count never fell as the scale grew
    trials = settings["trials"]
    assert trials[0]["scale"] == 0.0 and len(trials) >= 3
    assert {"scale": settings["scale"], "mean_layer_visual_tokens": mean,
            "mean_final_visual_tokens": settings["mean_final_visual_tokens"]} in trials
    by_scale = [t["mean_layer_visual_tokens"] for t in sorted(trials, key=lambda t: t["scale"])]
    assert by_scale == sorted(by_scale)
    assert settings["command"].startswith("llava-patch sparsevlm-calibrate --model ") and "--keep 24" in settings["command"]
    assert {"torch", "transformers"} <= set(settings["versions"]) and settings["device"] == "cpu" and settings["date"]
    # the file, read back through the method's `settings` option, gives the same counts (batched otherwise)
    vlm = load_model(checkpoint, backend="hf", device="cpu")
    handle = llava_patch.apply(vlm.model, "sparsevlm", keep=KEEP, settings=str(output))
    assert handle.method_object.settings() == (settings["scale"], settings["bias"])
    means = _layer_means(vlm, handle, data, images, batch_size=3)
    assert means == pytest.approx(settings["per_sample_layer_visual_tokens"], abs=1e-9)
    loaded = load_sparsevlm_settings(output)
    assert (loaded.keep, loaded.scale, loaded.bias, loaded.path) == (KEEP, settings["scale"], 0.0, str(output))


def test_the_settings_file_is_never_overwritten(calibrated, capsys, tmp_path):
    checkpoint, data, images, output, _ = calibrated
    before = output.read_bytes()
    capsys.readouterr()
    assert main(_arguments(checkpoint, data, images, output)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"llava-patch sparsevlm-calibrate: {output}: already exists; the settings are not overwritten " \
                   "(choose a new --output)"
    assert output.read_bytes() == before
    with pytest.raises(FileExistsError, match="already exists"):  # before the model is loaded
        calibrate("/nonexistent/checkpoint", data, images, KEEP, output)


def test_the_method_checks_the_settings_against_its_budget_and_model(calibrated, tiny_llava, tmp_path):
    _, _, _, output, _ = calibrated
    model, _ = tiny_llava
    with pytest.raises(ValueError, match=rf"keep=30 but the settings {output} were calibrated for keep=24"):
        llava_patch.apply(model, "sparsevlm", keep=30, settings=str(output))
    with pytest.raises(ValueError, match=rf"reduction_ratio=0.5 but the settings {output} were calibrated for keep=24"):
        llava_patch.apply(model, "sparsevlm", reduction_ratio=0.5, settings=str(output))
    with pytest.raises(ValueError, match="pass settings or scale and bias, not both"):
        llava_patch.apply(model, "sparsevlm", keep=KEEP, settings=str(output), scale=1.0, bias=0.0)
    with pytest.raises(ValueError, match=r"calibrated with layers=default; got layers=\[0, 1\]"):
        llava_patch.apply(model, "sparsevlm", keep=KEEP, settings=str(output), layers=(0, 1))
    data = json.loads(output.read_text())
    deeper = tmp_path / "deeper.json"
    deeper.write_text(json.dumps({**data, "model": {**data["model"], "layers": 32}}))
    with pytest.raises(ValueError, match=rf"settings {deeper} were calibrated on a language model of 32 layers"):
        llava_patch.apply(model, "sparsevlm", keep=KEEP, settings=str(deeper))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**data, "scale": "13.5"}))
    with pytest.raises(SettingsError, match=rf"{broken}: field 'scale' must be a finite number"):
        llava_patch.apply(model, "sparsevlm", keep=KEEP, settings=str(broken))
    broken.write_text(json.dumps({**data, "format": "llava_patch.fitprune_recipe"}))
    with pytest.raises(SettingsError, match=rf"{broken}: field 'format' is 'llava_patch.fitprune_recipe'"):
        load_sparsevlm_settings(broken)
    with pytest.raises(FileNotFoundError, match=r"missing.json: no such SparseVLM settings file .*sparsevlm-calibrate"):
        llava_patch.apply(model, "sparsevlm", keep=KEEP, settings=str(tmp_path / "missing.json"))
    assert "forward" not in vars(model.model.language_model)  # every refusal left the model as it was


def test_calibration_options_and_unreachable_targets_are_refused(calibrated, capsys, tmp_path):
    checkpoint, data, images, _, _ = calibrated
    capsys.readouterr()
    assert main(_arguments(checkpoint, data, images, tmp_path / "a.json", "--option", "scale=2")) == 2
    assert "option 'scale' is set by the calibration itself" in capsys.readouterr().err
    arguments = _arguments(checkpoint, data, images, tmp_path / "b.json")
    arguments[arguments.index("--keep") + 1] = "100"
    assert main(arguments) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the trials' progress bars
    assert line.startswith("llava-patch sparsevlm-calibrate: keep=100: at scale ") and "the most it can keep on these questions" in line
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def _steps(table):
    """A measure whose mean is a step function of the scale (as SparseVLM's int(rank·scale + bias))."""
    calls = []

    def measure(scale, bias):
        calls.append(scale)
        value = float(int(scale * table + bias))
        return Measurement([value], [int(value)], [64])

    return measure, calls


def test_the_search_brackets_then_bisects_and_keeps_the_closest_trial():
    measure, calls = _steps(3)  # mean = int(3·scale)
    result = search_scale(measure, keep=21, progress=False)  # scale 7 exactly: bracket [4, 8]
    assert result.reached and result.measurement.mean == 21 and calls[:5] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert [t.scale for t in result.trials] == calls and 7.0 <= result.scale < 7.0 + 1 / 3
    measure, calls = _steps(64)  # steps of 1 token per 1/64 of scale: 10.5 is never hit exactly
    result = search_scale(measure, keep=10, tolerance=0.001, resolution=1e-3, progress=False)
    assert result.reached and result.measurement.mean == 10
    result = search_scale(_steps(1)[0], keep=5, bias=0.5, tolerance=0.01, progress=False)
    assert result.reached and result.bias == 0.5
    with pytest.raises(ValueError, match="at scale 0 with bias 30 SparseVLM already keeps 30.00 .*a lower bias may keep fewer"):
        search_scale(_steps(1)[0], keep=5, bias=30, progress=False)
    floor = lambda scale, bias: Measurement(layer_mean=[18.9], final=[1], visual_tokens=[256])  # noqa: E731
    with pytest.raises(ValueError, match="already keeps 18.90 .*SparseVLM's floor on this model.*no setting keeps fewer"):
        search_scale(floor, keep=13, progress=False)


def test_llava_next_calibrates_in_the_layout_its_options_name(tiny_next_dir, tmp_path, capsys):
    """`--option mode=paper` (FasterVLM's fixed 5-crop layout) reaches the method and the preprocessing,
    and is recorded; the settings then run with the same option."""
    data, images = _calibration(tmp_path, count=4)
    output = tmp_path / "sparsevlm-60.json"
    arguments = _arguments(tiny_next_dir, data, images, output, "--option", "mode=paper")
    arguments[arguments.index("--keep") + 1] = "60"
    arguments[arguments.index("--tolerance") + 1] = "0.02"
    assert main(arguments) == 0, capsys.readouterr().err[-2000:]
    settings = json.loads(output.read_text())
    assert settings["options"] == {"mode": "paper"} and settings["model"]["visual_tokens"] == 5 * 64
    assert settings["reached"] and abs(settings["mean_layer_visual_tokens"] - 60) <= 0.02 * 60
    assert "--option mode=paper" in settings["command"]
    vlm = load_model(tiny_next_dir, backend="hf", device="cpu")
    handle = llava_patch.apply(vlm.model, "sparsevlm", keep=60, settings=str(output), mode="paper")
    means = _layer_means(vlm, handle, data, images, batch_size=4)
    assert means == pytest.approx(settings["per_sample_layer_visual_tokens"], abs=1e-9)
