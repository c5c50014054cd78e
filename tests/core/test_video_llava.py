"""Video-LLaVA: per-frame selection, the frame [CLS] option, video decoding and its errors."""

import av
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

import llava_patch
from llava_patch.models.media import read_image, read_video, sample_indices, video_llava_inputs
from llava_patch.models.tiny import NUM_PATCHES, SELECT_LAYER, random_image

PROMPTS = ["USER : <video> what is in the image ? ASSISTANT :", "USER : <video> w1 w2 w3 ASSISTANT :"]


def _load(directory, attn="sdpa"):
    model = VideoLlavaForConditionalGeneration.from_pretrained(directory, attn_implementation=attn).eval()
    return model, AutoTokenizer.from_pretrained(directory), VideoLlavaImageProcessor.from_pretrained(directory)


def _videos(count, first_seed=0):
    return [[random_image(100 * (first_seed + v) + f, (60, 80)) for f in range(8)] for v in range(count)]


def _inputs(loaded, prompts, videos=None, images=None):
    model, tokenizer, image_processor = loaded
    return video_llava_inputs(model.config, tokenizer, image_processor, prompts, videos=videos, images=images)


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def _generate(model, inputs):
    return model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                          suppress_tokens=[model.config.image_token_id, model.config.video_token_id])


def test_keeping_every_patch_and_the_frame_cls_is_bit_identical(tiny_video_dir):
    loaded = _load(tiny_video_dir)
    model = loaded[0]
    videos = _inputs(loaded, PROMPTS, videos=_videos(2))
    images = _inputs(loaded, ["USER : <image> colour ? ASSISTANT :"], images=[random_image(7)])
    references = [(_logits(model, inputs), _generate(model, inputs)) for inputs in (videos, images)]
    with llava_patch.apply(model, "fastervlm", keep=NUM_PATCHES, keep_frame_cls=True):
        for inputs, (logits, tokens) in zip((videos, images), references):
            assert torch.equal(_logits(model, inputs), logits)
            assert torch.equal(_generate(model, inputs), tokens)


@pytest.mark.parametrize("keep_frame_cls, per_frame", [(False, 0), (True, 1)])
@pytest.mark.parametrize("keep", [1, 13, 32])
def test_every_frame_keeps_keep_tokens(tiny_video_dir, keep, keep_frame_cls, per_frame):
    loaded = _load(tiny_video_dir)
    handle = llava_patch.apply(loaded[0], "vtc_cls", keep=keep, keep_frame_cls=keep_frame_cls)
    _logits(loaded[0], _inputs(loaded, PROMPTS, videos=_videos(2)))
    assert handle.last_visual_tokens == [8 * (keep + per_frame)] * 2  # e.g. 8·26 = 208 at 90% of 256
    assert [[len(frame) for frame in video] for video in handle.last_selection] == [[keep] * 8] * 2


def test_per_frame_selection_equals_an_eager_reference_frame_by_frame(tiny_video_dir):
    loaded = _load(tiny_video_dir)
    inputs = _inputs(loaded, PROMPTS, videos=_videos(2, first_seed=3))
    handle = llava_patch.apply(loaded[0], "fastervlm", keep=12)
    _logits(loaded[0], inputs)
    eager = _load(tiny_video_dir, attn="eager")[0].model.video_tower
    for video, selection in zip(inputs["pixel_values_videos"], handle.last_selection):
        for frame, kept in zip(video, selection):
            with torch.no_grad():
                row = eager(frame[None], output_attentions=True).attentions[SELECT_LAYER][0, :, 0, 1:].mean(dim=0)
            assert torch.equal(kept, row.topk(12).indices.sort().values)


def test_a_batch_of_two_videos_generates_what_each_does_alone(tiny_video_dir):
    loaded = _load(tiny_video_dir)
    llava_patch.apply(loaded[0], "fastervlm", reduction_ratio=0.75)
    videos = _videos(2, first_seed=5)
    batch_inputs = _inputs(loaded, PROMPTS, videos=videos)
    batch = _generate(loaded[0], batch_inputs)
    for row in range(2):
        alone_inputs = _inputs(loaded, [PROMPTS[row]], videos=[videos[row]])
        alone = _generate(loaded[0], alone_inputs)
        assert torch.equal(batch[row, batch_inputs["input_ids"].shape[1]:], alone[0, alone_inputs["input_ids"].shape[1]:])


def test_keep_larger_than_a_frame_is_refused(tiny_video_dir):
    model = _load(tiny_video_dir)[0]
    with pytest.raises(ValueError, match=r"keep=65 is outside \[1, 64\]"):
        llava_patch.apply(model, "fastervlm", keep=65)
    with pytest.raises(ValueError, match="keep_frame_cls must be True or False"):
        llava_patch.apply(model, "fastervlm", keep=8, keep_frame_cls="yes")


def _write_video(path, frames: int, codec="ffv1"):
    """A video whose frame i is a solid grey of level 10·i (lossless codec, so decoding is exact)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv444p" if codec == "ffv1" else "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 10 * index, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_synthetic_video_decodes_to_the_uniformly_sampled_frames(tmp_path):
    path = tmp_path / "grey-ramp.mkv"
    _write_video(path, frames=20)
    frames = read_video(path)
    assert sample_indices(20, 8) == [0, 2, 5, 8, 10, 13, 16, 19]
    levels = [int(round(np.asarray(frame).mean())) for frame in frames]
    assert levels == [10 * index for index in sample_indices(20, 8)]
    assert all(frame.size == (32, 24) and frame.mode == "RGB" for frame in frames)


def test_unreadable_or_short_videos_and_images_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such video file"):
        read_video(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(ValueError, match="garbage.mp4: cannot be decoded as a video"):
        read_video(garbage)
    short = tmp_path / "short.mkv"
    _write_video(short, frames=5)
    with pytest.raises(ValueError, match="short.mkv: 5 frame\\(s\\), fewer than the 8 Video-LLaVA samples"):
        read_video(short)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: cannot be read as an image"):
        read_image(broken)
    with pytest.raises(FileNotFoundError, match="absent.png: no such image file"):
        read_image(tmp_path / "absent.png")


def test_a_video_with_a_declared_frame_count_is_sampled_the_same_way(tmp_path):
    path = tmp_path / "grey-ramp.mp4"
    _write_video(path, frames=20, codec="mpeg4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 20  # mp4 declares its count: the metadata path
    levels = [np.asarray(frame).mean() for frame in read_video(path)]
    assert np.allclose(levels, [10 * index for index in sample_indices(20, 8)], atol=3)  # lossy codec
