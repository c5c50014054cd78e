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
from ..vision import clip_encoder, encode_and_select
from .base import select_layer_index
from .hf_base import EncodedItems, HFAdapter


@register_adapter
class HFVideoLlavaAdapter(HFAdapter):
    model_description = "transformers VideoLlavaForConditionalGeneration (Video-LLaVA, option: keep_frame_cls)"
    options = {"keep_frame_cls": False}
    pixel_arguments = ("pixel_values", "pixel_values_videos")

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return isinstance(model, VideoLlavaForConditionalGeneration)

    def __init__(self, model: VideoLlavaForConditionalGeneration, keep_frame_cls: bool = False) -> None:
        super().__init__(model)
        config = model.config
        if config.vision_feature_select_strategy != "default":
            raise ValueError(f"vision_feature_select_strategy={config.vision_feature_select_strategy!r}: pruning needs 'default'")
        if not isinstance(keep_frame_cls, bool):
            raise ValueError(f"keep_frame_cls must be True or False, got {keep_frame_cls!r}")
        for tower in (model.model.image_tower, model.model.video_tower):
            clip_encoder(tower)
        vision = config.vision_config
        self.select_layer = select_layer_index(config.vision_feature_layer, vision.num_hidden_layers)
        self.num_patches = (vision.image_size // vision.patch_size) ** 2  # per image / frame
        self.keep_frame_cls = keep_frame_cls

    def tokens_per_video(self, keep: int, frames: int) -> int:
        return frames * (keep + self.keep_frame_cls)

    def encode(self, arguments: dict) -> list[EncodedItems]:
        model, config, handle = self.model.model, self.model.config, self.handle
        encoded, selections, scores = [], [], []
        images = arguments.get("pixel_values")
        if images is not None:
            selection = self._select(model.image_tower, images)
            features = model.multi_modal_projector(selection.features)
            encoded.append(EncodedItems("image", config.image_token_id, [self.num_patches] * len(features),
                                        list(features), stacked=True))
            selections += list(selection.kept)
            scores += list(selection.scores)
        videos = arguments.get("pixel_values_videos")
        if videos is not None:
            count, frames = videos.shape[:2]
            selection = self._select(model.video_tower, videos.flatten(0, 1))
            features = selection.features
            if self.keep_frame_cls:  # transformers' order: the frame's [CLS] first, then its patches
                features = torch.cat([selection.cls_feature, features], dim=1)
            projected = model.multi_modal_projector(features)
            features = projected.reshape(count, -1, projected.shape[-1])
            encoded.append(EncodedItems("video", config.video_token_id, [frames * (self.num_patches + 1)] * count,
                                        list(features), stacked=True))
            selections += [list(kept) for kept in selection.kept.view(count, frames, -1)]
            scores += [list(row) for row in selection.scores.view(count, frames, -1)]
        handle.record(selections, scores)
        return encoded

    def _select(self, tower: nn.Module, pixel_values: torch.Tensor):
        handle = self.handle
        return encode_and_select(tower, pixel_values, handle.selector, handle.vision_keep, self.select_layer,
                                 handle.stop_at_select_layer)
