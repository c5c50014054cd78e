"""LLaVA-NeXT on Hugging Face transformers (`LlavaNextForConditionalGeneration`).

Every crop (the base image and each grid crop) is scored by its own [CLS] and keeps `keep` patches;
`llava_patch.anyres` lays them out in mode "native" (the checkpoint's spatial_unpad with newlines,
default) or "paper" (FasterVLM's fixed 672×672 grid, no unpad, no newlines). In paper mode the model's
`image_grid_pinpoints` is set to the fixed grid while patched (restored by `remove()`); the processor
must use the same grid: `processor.image_processor.image_grid_pinpoints = paper_grid_pinpoints(336)`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlavaNextForConditionalGeneration
from transformers.models.llava_next import modeling_llava_next as hf_next

from ..anyres import MODES, arrange_crops, paper_grid_pinpoints
from ..registry import register_adapter
from ..vision import clip_encoder, encode_and_select
from .base import select_layer_index
from .hf_base import EncodedItems, HFAdapter


@register_adapter
class HFLlavaNextAdapter(HFAdapter):
    model_description = "transformers LlavaNextForConditionalGeneration (LLaVA-NeXT, options: mode='native'|'paper')"
    options = {"mode": "native"}

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return isinstance(model, LlavaNextForConditionalGeneration)

    def __init__(self, model: LlavaNextForConditionalGeneration, mode: str = "native") -> None:
        super().__init__(model)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; LLaVA-NeXT modes are {', '.join(MODES)}")
        config = model.config
        if config.vision_feature_select_strategy != "default":
            raise ValueError(f"vision_feature_select_strategy={config.vision_feature_select_strategy!r}: pruning needs 'default'")
        self.tower = model.model.vision_tower
        clip_encoder(self.tower)
        vision = config.vision_config
        self.select_layer = select_layer_index(config.vision_feature_layer, vision.num_hidden_layers)
        self.side = vision.image_size // vision.patch_size
        self.num_patches = self.side**2  # per crop
        self.mode = mode
        self.original_pinpoints = config.image_grid_pinpoints

    def tokens_per_image(self, keep: int) -> int | None:
        return 5 * keep if self.mode == "paper" else None  # base + 2×2 grid; native depends on the image

    def install(self, handle) -> None:
        if self.mode == "paper":
            self.model.config.image_grid_pinpoints = paper_grid_pinpoints(self.model.config.vision_config.image_size)
        super().install(handle)

    def uninstall(self) -> None:
        self.model.config.image_grid_pinpoints = self.original_pinpoints
        super().uninstall()

    def encode(self, arguments: dict) -> list[EncodedItems]:
        config, handle = self.model.config, self.handle
        pixel_values, image_sizes = arguments["pixel_values"], arguments.get("image_sizes")
        if image_sizes is None:
            raise ValueError("LLaVA-NeXT inputs need image_sizes (the processor returns them)")
        crop_counts = [hf_next.image_size_to_num_patches(size, config.image_grid_pinpoints, config.vision_config.image_size)
                       for size in image_sizes]
        if pixel_values.dim() == 5:
            if max(crop_counts) > pixel_values.shape[1]:
                raise ValueError(
                    f"pixel_values hold {pixel_values.shape[1]} crops per image but image_grid_pinpoints "
                    f"{config.image_grid_pinpoints} need {max(crop_counts)}"
                    + ("; in paper mode the processor needs the same fixed grid: "
                       "processor.image_processor.image_grid_pinpoints = paper_grid_pinpoints(crop size)"
                       if self.mode == "paper" else ""))
            pixel_values = torch.cat([crops[:count] for crops, count in zip(pixel_values, crop_counts)])
        selection = encode_and_select(self.tower, pixel_values, handle.selector, handle.vision_keep,
                                      self.select_layer, handle.stop_at_select_layer)
        projected = self.model.model.multi_modal_projector(selection.features)
        features, placeholders = [], []
        for kept, image_features, size in zip(selection.kept.split(crop_counts), projected.split(crop_counts), image_sizes):
            grid = hf_next.get_anyres_image_grid_shape(size, config.image_grid_pinpoints, config.vision_config.image_size)
            unpad = lambda index_map, size=size: hf_next.unpad_image(index_map, size)  # noqa: E731
            features.append(arrange_crops(kept, image_features, grid, self.side, self.mode, unpad, self.model.model.image_newline))
            placeholders.append(self._native_count(grid, unpad))
        handle.record([list(kept) for kept in selection.kept.split(crop_counts)],
                      [list(scores) for scores in selection.scores.split(crop_counts)])
        return [EncodedItems("image", config.image_token_id, placeholders, features)]

    def _native_count(self, grid: tuple[int, int], unpad) -> int:
        """Placeholders the processor writes for an image: the unpruned native layout's length."""
        rows, cols = grid
        height, width = unpad(torch.zeros(1, rows * self.side, cols * self.side)).shape[1:]
        return self.num_patches + height * (width + 1)
