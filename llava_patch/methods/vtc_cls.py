"""VTC-CLS (arXiv 2412.05819): ensemble the [CLS] attention of the K layers ending at the select layer.

The reference sums the head-mean rows of layers s−K+1 … s; `mean` ranks identically; `max` and `min`
are the paper's ablations. K=1 is FasterVLM's score.
"""

from __future__ import annotations

import torch

from ..registry import register_method
from .base import SelectionInputs, Selector

_ENSEMBLES = {
    "sum": lambda stacked: stacked.sum(0),
    "mean": lambda stacked: stacked.mean(0),
    "max": lambda stacked: stacked.amax(0),
    "min": lambda stacked: stacked.amin(0),
}


@register_method("vtc_cls")
class VtcCls(Selector):
    def __init__(self, layers: int = 3, ensemble: str = "sum") -> None:
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"vtc_cls: layers must be a positive int (number of layers ensembled), got {layers!r}")
        if ensemble not in _ENSEMBLES:
            raise ValueError(f"vtc_cls: ensemble must be one of {', '.join(_ENSEMBLES)}, got {ensemble!r}")
        self.layers = layers
        self.ensemble = ensemble

    def cls_layers(self, select_layer: int) -> list[int]:
        if self.layers > select_layer + 1:
            raise ValueError(
                f"vtc_cls: layers={self.layers} needs encoder layers {select_layer - self.layers + 1}..{select_layer}, "
                f"but the select layer is index {select_layer} (only {select_layer + 1} layers up to it)"
            )
        return list(range(select_layer - self.layers + 1, select_layer + 1))

    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        stacked = torch.stack([inputs.cls_attention[layer] for layer in sorted(inputs.cls_attention)])
        return _ENSEMBLES[self.ensemble](stacked)
