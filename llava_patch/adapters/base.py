"""What an adapter provides: the model family's geometry and how the selection is wired in."""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar

from torch import nn


def select_layer_index(vision_feature_layer: int, num_layers: int) -> int:
    """0-based encoder layer whose output is `hidden_states[vision_feature_layer]`.

    hidden_states[0] is the embedding output, so hidden_states[i] is the output of layer i−1 and
    hidden_states[-2] of a 24-layer tower is the output of layer 22.
    """
    if isinstance(vision_feature_layer, bool) or not isinstance(vision_feature_layer, int):
        raise ValueError(
            f"vision_feature_layer={vision_feature_layer!r}: only a single feature layer is supported "
            "(LLaVA-1.5 and later use -2)"
        )
    index = num_layers + vision_feature_layer if vision_feature_layer < 0 else vision_feature_layer - 1
    if not 0 <= index < num_layers:
        raise ValueError(
            f"vision_feature_layer={vision_feature_layer} does not name the output of an encoder layer "
            f"of this {num_layers}-layer vision tower"
        )
    return index


def bind_call(function: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """All arguments of a call to `function` by name, with its **kwargs flattened in."""
    arguments = dict(inspect.signature(function).bind(*args, **kwargs).arguments)
    arguments.update(arguments.pop("kwargs", {}))
    return arguments


class Adapter:
    """Subclasses read the model's configuration in `__init__` (raising ValueError for what they cannot
    patch, before anything is changed) and wire the handle's selector in with `install`."""

    model_description: ClassVar[str]
    options: ClassVar[dict[str, object]] = {}  # model-family options `apply` accepts (name → default)
    accepts_variable_counts: bool = False  # whether images may yield different token counts (`prumerge_plus`)
    num_patches: int  # patch tokens per image (crop, frame) before pruning
    select_layer: int  # 0-based encoder layer whose output feeds the projector

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        raise NotImplementedError

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def tokens_per_image(self, keep: int) -> int | None:
        """Visual tokens one image contributes when every crop keeps `keep` (None: depends on the image)."""
        return keep

    def tokens_per_video(self, keep: int, frames: int) -> int | None:
        """Visual tokens one video of `frames` frames contributes (None: this family takes no videos)."""
        return None

    def language_model(self) -> nn.Module:
        """The Llama-style decoder (`embed_tokens`, `layers`, `norm`, `rotary_emb`) that in-LLM methods patch."""
        raise NotImplementedError

    def install(self, handle) -> None:
        raise NotImplementedError

    def uninstall(self) -> None:
        raise NotImplementedError
