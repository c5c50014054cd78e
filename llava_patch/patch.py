"""`apply()`: the two-line entry point, the handle it returns, and what adapters are given.

    handle = llava_patch.apply(model, "fastervlm", keep=29)
    model.generate(...)            # handle.last_visual_tokens: what reached the language model
    handle.remove()

`apply` finds the model family's adapter and the method, checks everything before touching the
model, then wires the method in: a vision-stage method through the adapter (`PatchConfig`), an
LLM-stage method onto the adapter's language model (the vision side then keeps every patch).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from .budget import resolve_keep
from .methods.base import LanguageModelMethod, Selector
from .methods.none import NoPruning
from .registry import create_method, find_adapter

_HANDLE_ATTRIBUTE = "_llava_patch_handle"


@dataclass(frozen=True)
class Record:
    """What one call of a patched model did (see `PatchHandle` for the fields)."""

    selection: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    visual_tokens: list[int] = field(default_factory=list)
    equivalent_visual_tokens: list[float] | None = None
    layer_visual_tokens: list[list[int]] | None = None


class Recorder:
    """The one place a call's outcome is reported. Adapters open `call()` around every public entry
    point (forward, generate): the outermost one starts a fresh `Record`, nested ones (generate's own
    forward steps) belong to it. Whoever decides what reaches the LLM reports it with `record` — the
    adapter for vision-stage methods, the LLM-stage method after it otherwise."""

    def __init__(self) -> None:
        self.last = Record()
        self._depth = 0

    @contextmanager
    def call(self) -> Iterator[None]:
        if self._depth == 0:
            self.last = Record()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def record(self, selection: list, scores: list, visual_tokens: list[int],
               equivalent_visual_tokens: list[float] | None = None,
               layer_visual_tokens: list[list[int]] | None = None) -> None:
        self.last = Record(selection, scores, list(visual_tokens), equivalent_visual_tokens, layer_visual_tokens)


@dataclass(frozen=True)
class PatchConfig:
    """Everything an adapter needs to wire the vision stage into its model."""

    selector: Selector
    keep: int  # patches kept per image (crop, frame)
    stop_at_select_layer: bool
    recorder: Recorder
    # Set while an LLM-stage method is applied: adapters pass it, before each prefill, the (B, L) mask
    # of the visual tokens in the sequence the language model is about to receive.
    visual_positions: Callable[[torch.Tensor], None] | None = None


class PatchHandle:
    """A model patched with one method; its `last_*` attributes describe the last call (read-only,
    reset at the start of every call, with or without images).

    last_selection: per image, a 1-D LongTensor of kept patch indices, ascending; for multi-crop
        images (LLaVA-NeXT) and videos, a list of those per crop / frame; for LLM-stage methods, per
        sample, the kept positions among its visual tokens.
    last_scores: the method's scores over all patches (visual tokens), in the same structure.
    last_visual_tokens: per sample (prompt row), visual tokens that reached the LLM (for an LLM-stage
        method: those kept from its pruning layer on).
    last_equivalent_visual_tokens: LLM-stage methods only: the layer-averaged count that
        SparseVLM/VisionZip-style tables report (FastV: (K·N + (layers−K)·kept)/layers).
    last_layer_visual_tokens: LLM-stage methods only: per sample, the visual tokens each decoder layer
        processed (what the cost model needs for layer-wise schedules).
    """

    def __init__(self, model: nn.Module, adapter, method, keep: int | None, recorder: Recorder) -> None:
        self.model = model
        self.adapter = adapter
        self.method_object = method
        self.method = method.name
        self.keep = keep  # per image (crop, frame); for LLM-stage methods per sample, None with a ratio
        self._recorder = recorder
        self.active = True

    @property
    def last_selection(self) -> list:
        return self._recorder.last.selection

    @property
    def last_scores(self) -> list:
        return self._recorder.last.scores

    @property
    def last_visual_tokens(self) -> list[int]:
        return self._recorder.last.visual_tokens

    @property
    def last_equivalent_visual_tokens(self) -> list[float] | None:
        return self._recorder.last.equivalent_visual_tokens

    @property
    def last_layer_visual_tokens(self) -> list[list[int]] | None:
        return self._recorder.last.layer_visual_tokens

    def remove(self) -> None:
        """Restore the model's original behaviour exactly. Removing twice is a no-op."""
        if not self.active:
            return
        self.adapter.uninstall()
        if isinstance(self.method_object, LanguageModelMethod):
            self.method_object.detach()
        delattr(self.model, _HANDLE_ATTRIBUTE)
        self.active = False

    def expected_visual_tokens(self, frames: int | None = None) -> int | None:
        """Visual tokens one single-image sample (or, with `frames`, one-video sample) must carry into the
        LLM under this patch, when that is fixed (None where the count depends on the image: NeXT
        native, PruMerge+)."""
        if self.method_object.variable_count:
            return None

        def count(keep: int) -> int | None:
            return self.adapter.tokens_per_image(keep) if frames is None else self.adapter.tokens_per_video(keep, frames)

        if isinstance(self.method_object, LanguageModelMethod):
            unpruned = count(self.adapter.num_patches)
            return None if unpruned is None else self.method_object.tokens_kept(unpruned)
        return count(self.keep)

    def __enter__(self) -> "PatchHandle":
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"PatchHandle(method={self.method!r}, keep={self.keep}, of={self.adapter.num_patches}, {state})"


def get_handle(model: nn.Module) -> PatchHandle | None:
    """The handle of the patch applied to `model`, or None when it is not patched."""
    return getattr(model, _HANDLE_ATTRIBUTE, None)


def apply(
    model: nn.Module,
    method: str,
    *,
    keep: int | None = None,
    reduction_ratio: float | None = None,
    stop_at_select_layer: bool = True,
    **options,
) -> PatchHandle:
    """Patch `model` so that only `keep` visual tokens per image reach its language model.

    method: a name from `llava_patch.methods()`; `options` are that method's own (e.g. vtc_cls's
        `layers` and `ensemble`, random's `seed`) or the model family's (LLaVA-NeXT's `mode`,
        Video-LLaVA's `keep_frame_cls`).
    keep / reduction_ratio: the per-image budget, exactly one of them (`none` takes neither); for an
        LLM-stage method (`fastv`) the budget is per sample, over all its visual tokens.
    stop_at_select_layer: skip the vision layers after the one LLaVA feeds to the projector.
    Everything is checked before the model is touched: a ValueError leaves it as it was.
    """
    existing = get_handle(model)
    if existing is not None:
        raise RuntimeError(f"model is already patched ({existing!r}); call handle.remove() before applying again")
    adapter_class = find_adapter(model)
    model_options = {name: options.pop(name) for name in list(options) if name in adapter_class.options}
    adapter = adapter_class(model, **model_options)
    chosen = create_method(method, options, model_options=list(adapter_class.options))
    if not chosen.takes_budget:
        if keep is not None or reduction_ratio is not None:
            raise ValueError(f"method {method!r} keeps every token; do not pass keep or reduction_ratio")
        keep = adapter.num_patches
    elif isinstance(chosen, LanguageModelMethod):  # per sample, checked against its visual tokens at run time
        resolve_keep(keep, reduction_ratio, num_tokens=None)
        chosen.check_llm_budget(keep, reduction_ratio)
        chosen.check_language_model(adapter.language_model())
    else:
        keep = resolve_keep(keep, reduction_ratio, adapter.num_patches)
        chosen.check_budget(keep, adapter.num_patches)
    # a count that varies inside the LLM (SparseVLM) leaves the placeholders as they are: any family takes it
    if chosen.variable_count and chosen.stage == "vision" and not adapter.accepts_variable_counts:
        raise ValueError(f"method {method!r} gives each image its own token count; it is defined for single-crop "
                         f"LLaVA-1.5 models, not {type(model).__name__} with this configuration")
    recorder = Recorder()
    if isinstance(chosen, LanguageModelMethod):
        config = PatchConfig(NoPruning(), adapter.num_patches, stop_at_select_layer, recorder, chosen.visual_positions)
    else:
        chosen.cls_layers(adapter.select_layer)  # raises if the method's layers do not exist in this tower
        config = PatchConfig(chosen, keep, stop_at_select_layer, recorder)
    handle = PatchHandle(model, adapter, chosen, keep, recorder)
    adapter.install(config)
    if isinstance(chosen, LanguageModelMethod):
        chosen.attach(adapter.language_model(), keep, reduction_ratio, recorder)
    setattr(model, _HANDLE_ATTRIBUTE, handle)
    return handle
