"""Checkpoint conversion (original LLaVA ↔ llava-hf), comparison, and loading errors that name the file."""

import json
import shutil

import pytest
import torch

from llava_patch import cli
from llava_patch.models.convert import compare_checkpoints, hf_to_original
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import random_image


def test_conversion_round_trip_is_the_same_model(tiny_original, tmp_path):
    original, converted = tiny_original
    report = compare_checkpoints(original, converted)
    assert report["same_model"] and report["max_abs_difference"] == 0.0 and report["tensors_compared"] > 90
    back = hf_to_original(converted, tmp_path / "back")
    assert compare_checkpoints(original, back)["same_model"]
    images, questions = [random_image(1), random_image(2)], ["What is shown?", "Is there a dog?"]
    first, second = (load_model(path, backend="llava", device="cpu") for path in (original, back))
    assert torch.equal(first.forward(first.prepare(images, questions)).logits,
                       second.forward(second.prepare(images, questions)).logits)


def test_compare_reports_a_different_model(tiny_original, tmp_path):
    original, _ = tiny_original
    altered = tmp_path / "altered"
    shutil.copytree(original, altered)
    from safetensors.torch import load_file, save_file

    weights = load_file(altered / "model.safetensors")
    weights["model.norm.weight"] = weights["model.norm.weight"] + 1
    save_file(weights, altered / "model.safetensors", metadata={"format": "pt"})
    report = compare_checkpoints(original, altered)
    assert not report["same_model"]
    assert report["mismatched"] == ["model.language_model.norm.weight: max |difference| 1"]


def test_cli_convert_and_compare(tiny_original, tmp_path, capsys):
    original, converted = tiny_original
    assert cli.main(["convert", "--to", "hf", str(original), str(tmp_path / "again")]) == 0
    assert cli.main(["compare", str(converted), str(tmp_path / "again")]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["same_model"] is True
    # An existing destination is never overwritten.
    assert cli.main(["convert", "--to", "hf", str(original), str(tmp_path / "again")]) == 2
    assert "exists and is not empty; nothing is overwritten" in capsys.readouterr().err


@pytest.fixture
def broken_copy(tiny_original, tmp_path):
    copy = tmp_path / "llava-v1.5-broken"
    shutil.copytree(tiny_original[0], copy)
    return copy


def test_missing_config_is_named(broken_copy):
    (broken_copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"{broken_copy / 'config.json'}: missing"):
        load_model(broken_copy, backend="llava", device="cpu")


def test_malformed_config_is_named_with_its_line(broken_copy):
    (broken_copy / "config.json").write_text('{\n  "vocab_size": 400,\n  "hidden_size": ,\n}')
    with pytest.raises(ValueError, match=f"{broken_copy / 'config.json'}:3: malformed JSON"):
        load_model(broken_copy, backend="llava", device="cpu")
    with pytest.raises(ValueError, match=f"{broken_copy / 'config.json'}:3: malformed JSON"):
        compare_checkpoints(broken_copy, broken_copy)


def test_missing_weights_are_named(broken_copy):
    (broken_copy / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=f"{broken_copy}: no weights"):
        load_model(broken_copy, backend="llava", device="cpu")
    (broken_copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model.safetensors.index.json: lists model-00001-of-00002.safetensors, missing"):
        load_model(broken_copy, backend="llava", device="cpu")


def test_missing_or_absent_vision_tower_is_named(broken_copy):
    config = json.loads((broken_copy / "config.json").read_text())
    config["mm_vision_tower"] = "/nonexistent/clip-vit-large-patch14-336"
    (broken_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="mm_vision_tower '/nonexistent/clip-vit-large-patch14-336' does not exist"):
        load_model(broken_copy, backend="llava", device="cpu")
    del config["mm_vision_tower"]
    (broken_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no 'mm_vision_tower' entry"):
        load_model(broken_copy, backend="llava", device="cpu")


def test_a_relative_vision_tower_is_found_beside_the_checkpoint(broken_copy, tiny_original):
    shutil.copytree(tiny_original[0].parent / "clip-vit-tiny", broken_copy / "tower")
    config = json.loads((broken_copy / "config.json").read_text())
    config["mm_vision_tower"] = "tower"
    (broken_copy / "config.json").write_text(json.dumps(config))
    vlm = load_model(broken_copy, backend="llava", device="cpu")
    assert vlm.model.get_vision_tower().vision_tower_name == str((broken_copy / "tower").resolve())


def test_unknown_backend_and_missing_llava_package(tiny_original, monkeypatch):
    with pytest.raises(ValueError, match="backend='vllm'; choose one of llava, hf"):
        load_model(tiny_original[0], backend="vllm")
    monkeypatch.setitem(__import__("sys").modules, "llava.model.builder", None)
    with pytest.raises(ImportError, match="pip install --no-deps llava-torch==1.2.2.post1"):
        load_model(tiny_original[0], backend="llava", device="cpu")
