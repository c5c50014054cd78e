"""FastV (Chen et al., 2024) as the FasterVLM tables run it: prune image tokens inside the LLM at
decoder layer K (default 2) by the last prompt token's attention in layer K−1. The vision side keeps
every token; `llava_patch.fastv_llm` does the work. `keep` is per sample (all its image tokens ranked
jointly); `reduction_ratio` gives round(N_img·(1−R)) per sample."""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import SelectionInputs, Selector


@register_method("fastv")
class FastV(Selector):
    prunes_in_llm = True

    def __init__(self, layer: int = 2) -> None:
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            raise ValueError(f"fastv: layer must be a positive int (the decoder layer where pruning starts), got {layer!r}")
        self.layer = layer

    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        return torch.zeros(inputs.batch_size, num_patches, device=inputs.pixel_values.device)  # vision side keeps all
