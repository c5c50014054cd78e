"""Video-LLaVA on Hugging Face transformers (`VideoLlavaForConditionalGeneration`).

Images go through the image tower as in LLaVA-1.5 (`keep` of 256 patches). Each video frame goes
through the video tower on its own: its [CLS] row at the select layer scores its 256 patches, the
top `keep` stay, in raster order within the frame. transformers keeps every frame's [CLS] token in
the sequence; FasterVLM drops it. Option `keep_frame_cls` (default False, the paper's setting)
chooses; totals are frames·keep (+frames with [CLS]).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import VideoLlavaForConditionalGeneration

from ..registry import register_adapter
from .hf_base import EncodedCall, EncodedItems, HFAdapter


@register_adapter
class HFVideoLlavaAdapter(HFAdapter):
    model_description = "transformers VideoLlavaForConditionalGeneration (Video-LLaVA, option: keep_frame_cls)"
    options = {"keep_frame_cls": False}
    pixel_arguments = ("pixel_values", "pixel_values_videos")

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return isinstance(model, VideoLlavaForConditionalGeneration)

    def __init__(self, model: VideoLlavaForConditionalGeneration, keep_frame_cls: bool = False) -> None:
        if not isinstance(keep_frame_cls, bool):
            raise ValueError(f"keep_frame_cls must be True or False, got {keep_frame_cls!r}")
        super().__init__(model, towers=[model.model.image_tower, model.model.video_tower])  # per image / frame
        self.keep_frame_cls = keep_frame_cls

    def tokens_per_video(self, keep: int, frames: int) -> int:
        return frames * (keep + self.keep_frame_cls)

    def encode(self, arguments: dict) -> EncodedCall:
        model, config = self.model.model, self.model.config
        encoded, selections, scores = [], [], []
        images = arguments.get("pixel_values")
        if images is not None:
            selection = self.select(model.image_tower, images)
            features = model.multi_modal_projector(selection.features)
            encoded.append(EncodedItems("image", config.image_token_id, [self.num_patches] * len(features),
                                        list(features), stacked=True))
            selections += list(selection.kept)
            scores += list(selection.scores)
        videos = arguments.get("pixel_values_videos")
        if videos is not None:
            count, frames = videos.shape[:2]
            selection = self.select(model.video_tower, videos.flatten(0, 1))
            features = selection.features
            if self.keep_frame_cls:  # transformers' order: the frame's [CLS] first, then its patches
                features = torch.cat([selection.cls_feature, features], dim=1)
            projected = model.multi_modal_projector(features)
            features = projected.reshape(count, -1, projected.shape[-1])
            encoded.append(EncodedItems("video", config.video_token_id, [frames * (self.num_patches + 1)] * count,
                                        list(features), stacked=True))
            selections += [list(kept) for kept in selection.kept.view(count, frames, -1)]
            scores += [list(row) for row in selection.scores.view(count, frames, -1)]
        return EncodedCall(encoded, selections, scores)
