"""What an encoder adapter provides: a ViT with a [CLS] token, run layer by layer, with each layer's
[CLS] query and key projections reachable for hooks.

The selectors only need the [CLS] query's attention row of a layer (`llava_patch.cls_attention`),
so nothing in the shared vision path (`llava_patch.tower`) depends on the family; one subclass per
family says where its embeddings, layers and attention projections are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class LayerAttention:
    """The self-attention of one encoder layer, as `record_cls_attention` hooks it."""

    query: nn.Module  # the query projection: its output is (B, 1+P, heads·head_dim)
    key: nn.Module  # the key projection, same shape
    module: nn.Module  # the attention module; its forward hook fires after both projections ran
    num_heads: int
    scale: float  # the factor on q·kᵀ before the softmax (head_dim^-0.5)


class Encoder:
    """One vision tower of a supported family. The sequence it runs is [CLS] followed by the P patches."""

    family: ClassVar[str]  # named in the error for unsupported towers, e.g. "CLIP (transformers CLIPVisionModel)"

    @classmethod
    def supports(cls, tower: nn.Module) -> bool:
        raise NotImplementedError

    def __init__(self, tower: nn.Module) -> None:
        self.tower = tower

    @property
    def layers(self) -> Sequence[nn.Module]:
        """The encoder layers, in order; `hidden_states[i + 1]` of the tower is the output of layers[i]."""
        raise NotImplementedError

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 1+P, D): the input of layer 0 ([CLS] first)."""
        raise NotImplementedError

    def run_layer(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """The output of layer `index` for its input `hidden`, as the tower's own forward computes it."""
        raise NotImplementedError

    def attention(self, index: int) -> LayerAttention:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        # Where the pixels go in: the embeddings are the first parameters of every supported tower.
        return next(self.tower.parameters()).device
