"""What every selection method sees and returns; independent of the model backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


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


class Method:
    """What every method declares; `llava_patch.method_info(name)` reads these, so nothing else needs
    to know a method by its name."""

    name: str = ""  # set by @register_method
    stage: str = "vision"  # "vision": selects patches before the projector; "llm": prunes inside the LLM
    takes_budget: bool = True  # False for `none`: keeps every token, accepts neither keep nor reduction_ratio
    variable_count: bool = False  # True when the token count differs per image (`prumerge_plus`; in the LLM `sparsevlm`)
    budgets: tuple[int, ...] | None = None  # the only `keep` values the method defines (None: any)
    needs_recipe: bool = False  # True: a budget needs a recipe fitted to the model (FitPrune's `recipe` option)

    def __init__(self) -> None:
        """Subclasses take their options as keyword arguments; these are what `apply(**options)` accepts."""

    def check_budget(self, keep: int, num_patches: int) -> None:
        """Raise ValueError for budgets the method does not define."""
        if self.budgets is not None and keep not in self.budgets:
            raise ValueError(f"{self.name}: keep={keep}; the method is defined for keep = "
                             f"{', '.join(map(str, self.budgets))} only")


class Selector(Method):
    """A vision-stage method: score every patch, keep the top `keep` in ascending (raster) order."""

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


class LanguageModelMethod(Method):
    """An LLM-stage method: every patch reaches the projector and the method prunes visual tokens
    inside the Llama-style language model. `apply` checks it against the model, then attaches it to
    the adapter's decoder (`adapter.language_model()`); adapters tell it, before each prefill, where
    the visual tokens sit (`visual_positions`). It reports each pruned prefill to the recorder."""

    stage = "llm"

    def check_language_model(self, language_model: nn.Module) -> None:
        """Raise ValueError when the method cannot run on this decoder (nothing is changed yet)."""

    def check_llm_budget(self, keep: int | None, reduction_ratio: float | None) -> None:
        """Raise ValueError for a budget the method cannot run with (nothing is changed yet)."""

    def attach(self, language_model: nn.Module, keep: int | None, reduction_ratio: float | None, recorder) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        raise NotImplementedError

    def visual_positions(self, mask: torch.Tensor) -> None:
        """(B, L) visual-token positions of the sequence the next prefill receives."""
        raise NotImplementedError

    def tokens_kept(self, visual_tokens: int) -> int:
        """Visual tokens one sample with `visual_tokens` of them keeps."""
        raise NotImplementedError

    def layer_schedule(self, visual_tokens: int, num_layers: int) -> list[int] | None:
        """Visual tokens each decoder layer processes for a sample with `visual_tokens` of them, when
        that does not depend on the sample (None: it does, e.g. SparseVLM; measure it instead)."""
        return None
