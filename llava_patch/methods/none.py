"""No pruning: every patch reaches the language model (the unpruned reference through the same code path)."""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import SelectionInputs, Selector


@register_method("none")
class NoPruning(Selector):
    takes_budget = False

    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        return torch.zeros(inputs.batch_size, num_patches, device=inputs.pixel_values.device)
