"""Uniform-grid baseline: `keep` patches evenly spaced in raster order, the same for every image.

Index i of k sits at floor((i + ½)·P/k), the centre of the i-th of k equal runs of patches (the same
1-D spacing PruMerge+ uses for its grid part). Its "scores" mark the chosen patches with 1.
"""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import SelectionInputs, Selector


@register_method("grid")
class GridSelection(Selector):
    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        chosen = ((torch.arange(inputs.keep, dtype=torch.float64) + 0.5) * num_patches / inputs.keep).floor().long()
        row = torch.zeros(num_patches)
        row[chosen] = 1.0
        return row.expand(inputs.batch_size, -1).to(inputs.pixel_values.device)
