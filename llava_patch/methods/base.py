"""What every selection method sees and returns; independent of the model backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SelectionInputs:
    """Everything a selector may use for one batch of images (or crops, or frames).

    cls_attention: encoder layer index → (B, P) float32 attention that the [CLS] query pays to the
        P patch keys in that layer (post-softmax over all 1+P keys, mean over heads, [CLS] column dropped).
        Holds exactly the layers the selector asked for through `cls_layers`.
    pixel_values: (B, C, H, W) the images being scored.
    keep: patches to keep per image.
    """

    cls_attention: dict[int, torch.Tensor]
    pixel_values: torch.Tensor
    keep: int
    projections: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # see `key_layers`

    @property
    def batch_size(self) -> int:
        return self.pixel_values.shape[0]


class Selector:
    """Base class: score every patch, keep the top `keep` in ascending (raster) order."""

    name: str = ""  # set by @register_method
    keeps_everything: bool = False  # True for `none`: takes no budget, keeps all patches
    prunes_in_llm: bool = False  # True for `fastv`: the vision side keeps all, the LLM prunes (`fastv_llm`)
    variable_count: bool = False  # True when the token count differs per image (`prumerge_plus`)

    def check_budget(self, keep: int, num_patches: int) -> None:
        """Raise ValueError for budgets the method does not define (default: any keep works)."""

    def __init__(self) -> None:
        """Subclasses take their options as keyword arguments; these are what `apply(**options)` accepts."""

    def cls_layers(self, select_layer: int) -> list[int]:
        """Vision encoder layers whose [CLS] attention row this method needs.

        `select_layer` is the 0-based index of the encoder layer whose output feeds the projector
        (22 for LLaVA-1.5's `vision_feature_layer=-2` on a 24-layer tower).
        """
        return []

    def key_layers(self, num_layers: int) -> list[int]:
        """Vision layers whose raw [CLS] query and keys (no heads) the method needs (`inputs.projections`)."""
        return []

    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        """(B, P) importance of each patch; higher is kept first."""
        raise NotImplementedError

    def select(self, inputs: SelectionInputs, num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, keep) kept patch indices in ascending order, and the (B, P) scores they came from."""
        scores = self.scores(inputs, num_patches)
        kept = scores.topk(inputs.keep, dim=-1).indices.sort(dim=-1).values
        return kept, scores

    def merge(self, patches: torch.Tensor, kept, inputs: SelectionInputs):
        """The features that reach the projector: by default the kept patches' own, (B, keep, D)."""
        return patches.gather(1, kept.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
