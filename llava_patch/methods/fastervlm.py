"""FasterVLM (arXiv 2412.01818 v1): rank patches by the [CLS] attention of the select layer."""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import SelectionInputs, Selector


@register_method("fastervlm")
class FasterVLM(Selector):
    def cls_layers(self, select_layer: int) -> list[int]:
        return [select_layer]

    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        (layer,) = inputs.cls_attention
        return inputs.cls_attention[layer]
