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

from ..anyres import NextLayout
from ..patch import PatchConfig
from ..registry import register_adapter
from .hf_base import EncodedCall, EncodedItems, HFAdapter


@register_adapter
class HFLlavaNextAdapter(HFAdapter):
    model_description = "transformers LlavaNextForConditionalGeneration (LLaVA-NeXT, options: mode='native'|'paper')"
    options = {"mode": "native"}

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return isinstance(model, LlavaNextForConditionalGeneration)

    def __init__(self, model: LlavaNextForConditionalGeneration, mode: str = "native") -> None:
        super().__init__(model, towers=[model.model.vision_tower])  # per crop
        self.layout = NextLayout(model.config, mode, model.config.vision_config.image_size, self.side)

    def tokens_per_image(self, keep: int) -> int | None:
        return self.layout.tokens_per_image(keep)

    def install(self, config: PatchConfig) -> None:
        self.layout.install()
        super().install(config)

    def uninstall(self) -> None:
        self.layout.restore()
        super().uninstall()

    def encode(self, arguments: dict) -> EncodedCall:
        config = self.model.config
        pixel_values, image_sizes = arguments["pixel_values"], arguments.get("image_sizes")
        if image_sizes is None:
            raise ValueError("LLaVA-NeXT inputs need image_sizes (the processor returns them)")
        crop_size = config.vision_config.image_size
        crop_counts = [hf_next.image_size_to_num_patches(size, config.image_grid_pinpoints, crop_size) for size in image_sizes]
        if pixel_values.dim() == 5:
            if max(crop_counts) > pixel_values.shape[1]:
                raise ValueError(
                    f"pixel_values hold {pixel_values.shape[1]} crops per image but image_grid_pinpoints "
                    f"{config.image_grid_pinpoints} need {max(crop_counts)}"
                    + ("; in paper mode the processor needs the same fixed grid: "
                       "processor.image_processor.image_grid_pinpoints = paper_grid_pinpoints(crop size)"
                       if self.layout.mode == "paper" else ""))
            pixel_values = torch.cat([crops[:count] for crops, count in zip(pixel_values, crop_counts)])
        selection = self.select(self.model.model.vision_tower, pixel_values)
        projected = self.model.model.multi_modal_projector(selection.features)

        def grid_shape(size) -> tuple[int, int]:  # transformers gives (rows, cols)
            return hf_next.get_anyres_image_grid_shape(size, config.image_grid_pinpoints, crop_size)

        features, kept, scores = self.layout.arrange(selection.kept, selection.scores, projected, crop_counts, image_sizes,
                                                     grid_shape, hf_next.unpad_image, self.model.model.image_newline)
        placeholders = [self._native_count(grid_shape(size), size) for size in image_sizes]
        return EncodedCall([EncodedItems("image", config.image_token_id, placeholders, features)], kept, scores)

    def _native_count(self, grid: tuple[int, int], image_size) -> int:
        """Placeholders the processor writes for an image: the unpruned native layout's length."""
        rows, cols = grid
        height, width = hf_next.unpad_image(torch.zeros(1, rows * self.side, cols * self.side), image_size).shape[1:]
        return self.num_patches + height * (width + 1)
