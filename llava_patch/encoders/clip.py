"""CLIP vision towers (transformers `CLIPVisionModel`): LLaVA-1.5, LLaVA-NeXT, Video-LLaVA and the
original LLaVA codebase's `CLIPVisionTower.vision_tower`."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..registry import register_encoder
from .base import Encoder, LayerAttention


def _vision(tower: nn.Module) -> nn.Module:
    """The module holding `embeddings`, `pre_layrnorm` and `encoder.layers` (wrappers such as
    `CLIPVisionModelWithProjection` keep it under `vision_model`)."""
    return getattr(tower, "vision_model", tower)


@register_encoder
class ClipEncoder(Encoder):
    family = "CLIP (transformers CLIPVisionModel)"

    @classmethod
    def supports(cls, tower: nn.Module) -> bool:
        vision = _vision(tower)
        embeddings = getattr(vision, "embeddings", None)
        return (hasattr(embeddings, "class_embedding") and hasattr(vision, "pre_layrnorm")
                and hasattr(getattr(vision, "encoder", None), "layers"))

    def __init__(self, tower: nn.Module) -> None:
        super().__init__(tower)
        self.vision = _vision(tower)

    @property
    def layers(self) -> Sequence[nn.Module]:
        return self.vision.encoder.layers

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision.pre_layrnorm(self.vision.embeddings(pixel_values))

    def run_layer(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers[index](hidden, None)  # no attention mask: every image has all its patches

    def attention(self, index: int) -> LayerAttention:
        attention = self.layers[index].self_attn
        return LayerAttention(attention.q_proj, attention.k_proj, attention, attention.num_heads, attention.scale)
