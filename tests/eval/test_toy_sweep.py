"""`make reproduce` without CKPT/DATA: the toy LLaVA on a sample of easy-VQA (a small slice of it here)."""

import json

import pytest

from llava_patch.eval.sweep import reproduce


def test_the_default_sweep_runs_the_toy_on_easy_vqa_with_its_no_image_row(toy_dir, tmp_path):
    rows = reproduce(output_root=tmp_path, methods=["none", "fastervlm"], ratios=[0.95], limit=3, images=2)
    assert [(row["benchmark"], row["method"], row["visual_tokens_mean"]) for row in rows] == [
        ("easyvqa", "none", 256), ("easyvqa", "fastervlm", 13), ("easyvqa", "no image", 0.0),
        ("easyvqa_yesno", "none", 256), ("easyvqa_yesno", "fastervlm", 13), ("easyvqa_yesno", "no image", 0.0)]
    root = tmp_path / "toy"
    manifest = json.loads((root / "easyvqa" / "none-0" / "manifest.json").read_text())
    assert manifest["model"] == str(toy_dir) and manifest["backend"] == "hf"
    table = (root / "results.md").read_text()
    assert "value [95% CI]" in table and "| easyvqa | no image | 100% | 0.0 | 3 |" in table
    assert (root / "retention.png").is_file()


def test_a_sweep_folder_of_another_sample_size_is_refused(toy_dir, tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "sample.json").write_text('{"images": 12}\n')
    with pytest.raises(ValueError, match="holds the sweep of 12 easy-VQA images, not 3"):
        reproduce(output_root=tmp_path, images=3)
