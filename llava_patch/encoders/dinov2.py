"""DINOv2 vision towers without registers (transformers `Dinov2Model`): [CLS] then the patches, no
layernorm before the first layer."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from transformers import Dinov2Model

from ..registry import register_encoder
from .base import Encoder, LayerAttention


@register_encoder
class Dinov2Encoder(Encoder):
    # Dinov2WithRegistersModel is a separate class: its register tokens would pass for patches.
    family = "DINOv2 without registers (transformers Dinov2Model)"

    @classmethod
    def supports(cls, tower: nn.Module) -> bool:
        return isinstance(tower, Dinov2Model)

    @property
    def layers(self) -> Sequence[nn.Module]:
        return self.tower.encoder.layer

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.tower.embeddings(pixel_values)

    def run_layer(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers[index](hidden)

    def attention(self, index: int) -> LayerAttention:
        attention = self.layers[index].attention
        return LayerAttention(attention.q_proj, attention.k_proj, attention, attention.num_attention_heads,
                              attention.scaling)
