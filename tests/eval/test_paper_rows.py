"""Runs that fill the papers' rows as their authors' code ran them: the 0-token row (`--empty-image`:
the image prompt with 0 visual tokens, as FasterVLM's code feeds the LLM at 100% reduction), and the
printed-vs-actual token count (`--printed-tokens`: FastV keeps int(576·(1−R)) = 57 in the row printed
58), both recorded in the manifest; old runs without these settings still resume."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from llava_patch.eval.benchmarks import get_benchmark
from llava_patch.eval.minibench import build_minibench
from llava_patch.eval.runner import CONFIG, RunConfig, run


@pytest.fixture(scope="module")
def minibench(tmp_path_factory):
    return build_minibench(tmp_path_factory.mktemp("data") / "eval", images=2)


def _config(tiny_original, minibench, output, **overrides):
    settings = dict(model=str(tiny_original[0]), benchmark="pope", data_root=str(minibench), output_dir=str(output),
                    method="none", batch_size=3, dtype="float32", limit=6)
    return RunConfig(**{**settings, **overrides})


def _answers(output):
    return [json.loads(line) for line in (Path(output) / "answers.jsonl").read_text().splitlines()]


def _fastervlm_zero_token_ids(prompt, tokenizer):
    """FasterVLM at visual_token_num=0 (llava_arch.py `encode_images` → an all-False index mask, then
    `prepare_inputs_labels_for_multimodal`): LLaVA's `tokenizer_image_token` ids of the image prompt,
    and the image's features — now 0 rows — spliced in at the -200 placeholder. Splicing 0 rows leaves
    the text ids on either side, BOS once: the placeholder's id removed, nothing else."""
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token

    ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX)
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    return [token for token in ids if token != IMAGE_TOKEN_INDEX]


def test_an_empty_image_run_feeds_the_image_prompt_with_zero_visual_tokens(tiny_original, minibench, tmp_path):
    from llava_patch.models.loading import load_model

    manifest = run(_config(tiny_original, minibench, tmp_path / "empty", empty_image=True))
    assert manifest["empty_image"] is True and manifest["no_image"] is False
    assert manifest["visual_input"]["mode"] == "empty_image" and "FasterVLM" in manifest["visual_input"]["what"]
    assert manifest["measured_visual_tokens"] is None and manifest["method"] == "none"
    assert all(row["metadata"]["visual_tokens"] == 0 for row in _answers(tmp_path / "empty"))

    vlm = load_model(str(tiny_original[0]), backend="llava", dtype=torch.float32)
    questions = get_benchmark("pope").questions(minibench)[:6]
    expected = []
    for question in questions:
        ids = _fastervlm_zero_token_ids(vlm.prompt(question.text), vlm.tokenizer)
        # not the text-only prompt: the "\n" after "<image>" (its own chunk) stays
        assert ids != vlm.prompt_ids(question.text, with_image=False)
        output = vlm.model.generate(inputs=torch.tensor([ids]), images=None, do_sample=False, num_beams=1,
                                    max_new_tokens=get_benchmark("pope").max_new_tokens, use_cache=True,
                                    pad_token_id=vlm.pad_token_id)
        expected.append(vlm.tokenizer.decode(output[0], skip_special_tokens=True).strip())
    assert [row["text"] for row in _answers(tmp_path / "empty")] == expected

    text_only = run(_config(tiny_original, minibench, tmp_path / "text", no_image=True))
    assert text_only["visual_input"]["mode"] == "no_image" and text_only["empty_image"] is False


def test_an_empty_image_run_on_transformers_gives_the_same_token_ids(tiny_original, minibench, tmp_path):
    from llava_patch.eval.runner import _empty_placeholders
    from llava_patch.models.loading import load_model

    original = load_model(str(tiny_original[0]), backend="llava", dtype=torch.float32)
    converted = load_model(str(tiny_original[1]), backend="hf", dtype=torch.float32)
    questions = [question.text for question in get_benchmark("pope").questions(minibench)[:3]]
    with _empty_placeholders(converted):
        inputs = converted.prepare(None, questions)
    assert "pixel_values" not in inputs and "prepare" not in vars(converted)  # the instance's own prepare is gone again
    for row, mask, question in zip(inputs["input_ids"], inputs["attention_mask"], questions):
        assert row[mask.bool()].tolist() == _fastervlm_zero_token_ids(original.prompt(question), original.tokenizer)
    manifest = run(_config(tiny_original, minibench, tmp_path / "hf", model=str(tiny_original[1]), backend="hf",
                           empty_image=True, limit=3))
    assert manifest["empty_image"] is True and manifest["questions"] == 3


def test_empty_image_drops_the_video_placeholders_and_keeps_the_text(tiny_video_dir):
    from llava_patch.eval.runner import _empty_placeholders
    from llava_patch.models.loading import load_model
    from llava_patch.models.media import video_llava_inputs

    vlm = load_model(str(tiny_video_dir), backend="hf", dtype=torch.float32)
    frames = [[Image.new("RGB", (32, 32), (9 * i, 0, 0)) for i in range(8)]]
    full = video_llava_inputs(vlm.model.config, vlm.tokenizer, vlm.image_processor, [vlm.prompt("what?")], videos=frames)
    with _empty_placeholders(vlm):
        inputs = vlm.prepare(None, ["what?"])
    placeholder = vlm.model.config.video_token_id
    expected = [token for token in full["input_ids"][0].tolist() if token != placeholder]
    assert inputs["input_ids"][0].tolist() == expected and len(expected) < full["input_ids"].shape[1]


@pytest.mark.parametrize("overrides, message", [
    ({"empty_image": True, "no_image": True}, "choose one"),
    ({"empty_image": True, "method": "fastervlm", "keep": 4}, "--empty-image gives the image 0 visual tokens; it runs with --method none"),
    ({"method": "fastv", "keep": 5, "printed_tokens": -1}, "--printed-tokens -1"),
])
def test_inconsistent_settings_are_refused_before_any_file(overrides, message, tiny_original, minibench, tmp_path):
    with pytest.raises(ValueError, match=message):
        run(_config(tiny_original, minibench, tmp_path / "bad", **overrides))
    assert not (tmp_path / "bad").exists()


def test_the_manifest_keeps_the_printed_and_the_actual_count(tiny_original, minibench, tmp_path):
    """FastV run as FasterVLM's authors' code ran it: keep 57 in the row printed 58 (here 5 in a row
    printed 6): the manifest names both; the layer-averaged count is recorded beside the final one."""
    manifest = run(_config(tiny_original, minibench, tmp_path / "fastv", method="fastv", keep=5, printed_tokens=6))
    assert manifest["printed_tokens"] == 6 and manifest["requested_budget"]["keep"] == 5
    assert manifest["measured_visual_tokens"] == {"min": 5, "mean": 5, "max": 5}
    equivalent = manifest["measured_equivalent_visual_tokens"]
    assert equivalent is not None and equivalent["min"] > 5  # layers before K see every visual token
    rows = _answers(tmp_path / "fastv")
    assert all(row["metadata"]["visual_tokens"] == 5 and row["metadata"]["equivalent_visual_tokens"] > 5 for row in rows)


def test_a_run_saved_before_the_new_settings_existed_still_resumes(tiny_original, minibench, tmp_path, capsys):
    config = _config(tiny_original, minibench, tmp_path / "old", method="fastervlm", keep=16, limit=3)
    run(config)
    saved = tmp_path / "old" / CONFIG
    previous = json.loads(saved.read_text())
    for name in ("empty_image", "printed_tokens"):
        del previous[name]
    saved.write_text(json.dumps(previous))
    capsys.readouterr()
    run(config)
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ValueError, match="holds a run with other settings"):
        run(_config(tiny_original, minibench, tmp_path / "old", method="fastervlm", keep=16, limit=3, printed_tokens=17))
