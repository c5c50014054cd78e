"""`load_model` on the transformers backend: every family it supports comes back as a `VLM` with one
`generate` contract (answers, `last_new_tokens`, `last_min_margins`)."""

import pytest

import llava_patch
from llava_patch.models.loading import VLM, HFNextVLM, VideoVLM, check_checkpoint_path, load_model
from llava_patch.models.tiny import NUM_PATCHES, random_image

SIZES = [(60, 120), (100, 50)]


def test_llava_next_loads_on_the_hf_backend_and_batches_like_one_by_one(tiny_next_dir):
    vlm = load_model(tiny_next_dir, backend="hf")
    assert isinstance(vlm, HFNextVLM) and isinstance(vlm, VLM)
    images = [random_image(30 + i, size) for i, size in enumerate(SIZES)]
    questions = ["what is in the image ?", "w1 w2 w3"]
    batched = vlm.generate(images, questions, max_new_tokens=4)
    single = [vlm.generate([image], [question], max_new_tokens=4)[0] for image, question in zip(images, questions)]
    assert batched == single
    assert len(vlm.last_min_margins) == 1 and vlm.last_min_margins[0] is not None


def test_llava_next_paper_mode_on_the_hf_backend_carries_five_crops_of_keep(tiny_next_dir):
    vlm = load_model(tiny_next_dir, backend="hf")
    images = [random_image(30 + i, size) for i, size in enumerate(SIZES)]
    with llava_patch.apply(vlm.model, "fastervlm", keep=9, mode="paper") as handle:
        vlm.generate(images, ["colour ?", "describe"], max_new_tokens=2)
        assert handle.last_visual_tokens == [5 * 9, 5 * 9] == [handle.expected_visual_tokens()] * 2
    with llava_patch.apply(vlm.model, "none") as handle:  # native layout again after remove(): placeholders follow
        vlm.generate(images[:1], ["colour ?"], max_new_tokens=2)
        assert handle.last_visual_tokens[0] > NUM_PATCHES


def test_video_llava_is_a_vlm_with_margins_none_where_it_samples(tiny_video_dir):
    vlm = load_model(tiny_video_dir, backend="hf")
    assert isinstance(vlm, VideoVLM) and isinstance(vlm, VLM)
    videos = [[random_image(i + frame) for frame in range(8)] for i in range(2)]
    answers = vlm.generate(videos, ["what is in the image ?", "describe"], max_new_tokens=3)
    assert len(answers) == 2 and vlm.last_min_margins == [None, None] and vlm.last_new_tokens >= 0


def test_an_unsupported_model_type_names_the_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match=r"config.json: model_type 'llama'; backend 'hf' loads llava, llava_next, video_llava"):
        load_model(tmp_path, backend="hf")


def test_a_checkpoint_that_looks_local_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for path in ("./missing", "missing", "runs/missing", str(tmp_path / "missing"), "~/surely-missing-llava"):
        with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
            check_checkpoint_path(path)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="file: not a checkpoint directory"):
        check_checkpoint_path("file")
    check_checkpoint_path("liuhaotian/llava-v1.5-7b")  # a hub id: left to the hub
    check_checkpoint_path(str(tmp_path))
