"""What an adapter provides: the model family's geometry and how the selection is wired in."""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar

from torch import nn

from ..patch import PatchConfig


def bind_call(function: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """All arguments of a call to `function` by name, with its **kwargs flattened in."""
    arguments = dict(inspect.signature(function).bind(*args, **kwargs).arguments)
    arguments.update(arguments.pop("kwargs", {}))
    return arguments


class Adapter:
    """Subclasses read the model's configuration in `__init__` (raising ValueError for what they cannot
    patch, before anything is changed) and wire the patch's selector in with `install`."""

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

    def install(self, config: PatchConfig) -> None:
        """Wire `config.selector` in; open `config.recorder.call()` around every public entry point and
        report each call once with `config.recorder.record(...)`; pass `config.visual_positions`, when
        set, the visual-token mask of each prefill."""
        raise NotImplementedError

    def uninstall(self) -> None:
        raise NotImplementedError
