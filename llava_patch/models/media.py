"""Reading images and videos (errors name the file), and Video-LLaVA's inputs without torchvision.

Video-LLaVA samples `num_frames` (8) frames uniformly over the whole video — frame indices
`linspace(0, n−1, 8)` truncated to integers, as its decord loader does — and preprocesses each like
an image (shortest side to the tower's size, centre crop, CLIP normalisation). transformers' own
Video-LLaVA video processor needs torchvision, which this project does not install.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .prompting import IMAGE_TOKEN, left_pad, pad_token_id, tokenize_with_placeholders

VIDEO_TOKEN = "<video>"


def read_image(path: str | Path) -> Image.Image:
    """An RGB image from a file; errors name the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: no such image file") from error
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error


def sample_indices(total_frames: int, num_frames: int) -> list[int]:
    """Video-LLaVA's uniform sampling: linspace over [0, total−1], truncated."""
    return np.linspace(0, total_frames - 1, num_frames, dtype=int).tolist()


def read_video(path: str | Path, num_frames: int = 8) -> list[Image.Image]:
    """Decode `num_frames` uniformly sampled RGB frames; errors name the file.

    Only the sampled frames are kept in memory. The frame count comes from the container's metadata
    when it has one that decoding confirms, otherwise from a counting pass over the stream.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        total = _declared_frames(path)
        frames = _decode(path, sample_indices(total, num_frames)) if total >= num_frames else []
        if len(frames) < num_frames:  # no or wrong metadata: count the frames, then sample
            total = sum(1 for _ in _frames(path))
            if total < num_frames:
                raise ValueError(f"{path}: {total} frame(s), fewer than the {num_frames} Video-LLaVA samples")
            frames = _decode(path, sample_indices(total, num_frames))
    except av.FFmpegError as error:
        raise ValueError(f"{path}: cannot be decoded as a video ({error})") from error
    return frames


def _frames(path: Path):
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream")
        yield from container.decode(video=0)


def _declared_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].frames if container.streams.video else 0


def _decode(path: Path, indices: list[int]) -> list[Image.Image]:
    """The frames at `indices` (ascending, repeats allowed), stopping after the last one."""
    wanted, found = set(indices), {}
    for index, frame in enumerate(_frames(path)):
        if index in wanted:
            found[index] = frame.to_image().convert("RGB")
        if index >= indices[-1]:
            break
    return [found[index] for index in indices if index in found]


def video_llava_inputs(
    model_config,
    tokenizer,
    image_processor,
    prompts: list[str],
    videos: list[list[Image.Image]] | None = None,
    images: list[Image.Image] | None = None,
) -> dict[str, torch.Tensor]:
    """Inputs for `VideoLlavaForConditionalGeneration` from prompts holding "<video>" / "<image>".

    Each "<video>" becomes frames × (patches + 1) video placeholders (transformers' video path keeps
    every frame's [CLS]); each "<image>" becomes `patches` image placeholders. Rows are left padded.
    """

    vision = model_config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    frames = len(videos[0]) if videos else 0
    placeholders = {
        VIDEO_TOKEN: (model_config.video_token_id, frames * (patches + 1)),
        IMAGE_TOKEN: (model_config.image_token_id, patches),
    }
    rows = [tokenize_with_placeholders(prompt, tokenizer, placeholders) for prompt in prompts]
    input_ids, attention_mask = left_pad(rows, pad_token_id(tokenizer))
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if videos:
        if any(len(video) != frames for video in videos):
            raise ValueError(f"videos have {[len(v) for v in videos]} frames; all must have the same number")
        pixels = _pixel_values(image_processor, [frame for video in videos for frame in video])
        inputs["pixel_values_videos"] = pixels.view(len(videos), frames, *pixels.shape[1:])
    if images:
        inputs["pixel_values"] = _pixel_values(image_processor, images)
    return inputs


def _pixel_values(image_processor, images: list[Image.Image]) -> torch.Tensor:
    from transformers import VideoLlavaImageProcessor

    # Video-LLaVA's image processor still names its output "pixel_values_images" unless told not to.
    legacy = {"return_legacy_image_output": False} if isinstance(image_processor, VideoLlavaImageProcessor) else {}
    return image_processor(images, return_tensors="pt", **legacy)["pixel_values"]
