"""`apply()`: the two-line entry point, and the handle it returns."""

from __future__ import annotations

import torch
from torch import nn

from .budget import resolve_keep
from .fastv_llm import FastVForward, FastVState
from .methods.base import Selector
from .registry import create_method, find_adapter

_HANDLE_ATTRIBUTE = "_llava_patch_handle"


class PatchHandle:
    """A model patched with one selection method.

    last_selection: per image of the last call, a 1-D LongTensor of kept patch indices, ascending;
        for multi-crop images (LLaVA-NeXT) and videos, a list of those per crop / frame.
    last_scores: the method's scores over all patches, in the same structure.
    last_visual_tokens: per sample (prompt row) of the last call, visual tokens that reached the LLM
        (for `fastv`: those kept from layer K on).
    last_equivalent_visual_tokens: `fastv` only: the layer-averaged count (K·N + (layers−K)·kept)/layers
        that SparseVLM/VisionZip-style tables report.
    """

    def __init__(self, model: nn.Module, adapter, selector: Selector, keep: int | None, stop_at_select_layer: bool,
                 llm_state: FastVState | None = None) -> None:
        self.model = model
        self.adapter = adapter
        self.selector = selector
        self.method = selector.name
        self.keep = keep  # per image (crop, frame); for fastv per sample, None with a reduction ratio
        self.vision_keep = adapter.num_patches if selector.prunes_in_llm else keep
        self.stop_at_select_layer = stop_at_select_layer
        self.llm_state = llm_state
        self.last_selection: list[torch.Tensor] = []
        self.last_scores: list[torch.Tensor] = []
        self.last_visual_tokens: list[int] = []
        self.last_equivalent_visual_tokens: list[float] | None = None
        self.active = True

    def record(self, selection: list, scores: list) -> None:
        """Adapters report each call's selection here (per image, or per image per crop/frame)."""
        self.last_selection = selection
        self.last_scores = scores

    def remove(self) -> None:
        """Restore the model's original behaviour exactly. Removing twice is a no-op."""
        if not self.active:
            return
        self.adapter.uninstall()
        if self.llm_state is not None:
            del self.adapter.language_model().forward
        delattr(self.model, _HANDLE_ATTRIBUTE)
        self.active = False

    def expected_visual_tokens(self, frames: int | None = None) -> int | None:
        """Visual tokens one single-image sample (or, with `frames`, one-video sample) must carry into the
        LLM under this patch, when that is fixed (None where the count depends on the image: NeXT
        native, PruMerge+)."""
        if self.selector.variable_count:
            return None

        def count(keep: int) -> int | None:
            return self.adapter.tokens_per_image(keep) if frames is None else self.adapter.tokens_per_video(keep, frames)

        if self.llm_state is not None:
            unpruned = count(self.adapter.num_patches)
            return None if unpruned is None else self.llm_state.budget(unpruned)
        return count(self.keep)

    def __enter__(self) -> "PatchHandle":
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"PatchHandle(method={self.method!r}, keep={self.keep}, of={self.adapter.num_patches}, {state})"


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
    keep / reduction_ratio: the per-image budget, exactly one of them (`none` takes neither).
    stop_at_select_layer: skip the vision layers after the one LLaVA feeds to the projector.
    Everything is checked before the model is touched: a ValueError leaves it as it was.
    """
    existing = getattr(model, _HANDLE_ATTRIBUTE, None)
    if existing is not None:
        raise RuntimeError(f"model is already patched ({existing!r}); call handle.remove() before applying again")
    adapter_class = find_adapter(model)
    model_options = {name: options.pop(name) for name in list(options) if name in adapter_class.options}
    adapter = adapter_class(model, **model_options)
    selector = create_method(method, options, model_options=list(adapter_class.options))
    llm_state = None
    if selector.keeps_everything:
        if keep is not None or reduction_ratio is not None:
            raise ValueError(f"method {method!r} keeps every token; do not pass keep or reduction_ratio")
        keep = adapter.num_patches
    elif selector.prunes_in_llm:  # the budget is per sample, checked against its image tokens at run time
        resolve_keep(keep, reduction_ratio, num_tokens=None)
        llm_state = FastVState(layer=selector.layer, keep=keep, reduction_ratio=reduction_ratio)
    else:
        keep = resolve_keep(keep, reduction_ratio, adapter.num_patches)
        selector.check_budget(keep, adapter.num_patches)
    if selector.variable_count and not adapter.accepts_variable_counts:
        raise ValueError(f"method {method!r} gives each image its own token count; it is defined for single-crop "
                         f"LLaVA-1.5 models, not {type(model).__name__} with this configuration")
    selector.cls_layers(adapter.select_layer)  # raises if the method's layers do not exist in this tower
    handle = PatchHandle(model, adapter, selector, keep, stop_at_select_layer, llm_state)
    llm_forward = FastVForward(adapter.language_model(), llm_state, handle) if llm_state else None
    adapter.install(handle)
    if llm_forward is not None:
        adapter.language_model().forward = llm_forward
    setattr(model, _HANDLE_ATTRIBUTE, handle)
    return handle
