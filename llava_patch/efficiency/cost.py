"""Cost model: multiply-accumulates (MACs), FLOPs (= 2·MACs) and KV-cache bytes per component, per
method and model, from the models' configurations (docs/efficiency.md §1).

Per transformer layer over n query tokens attending to c keys (c = n in prefill), hidden d, MLP width m:
  attention projections 4·n·d² (q, k, v, o; grouped KV heads shrink k and v), scores and weighted sum
  2·n·c·d, MLP k·n·d·m with k = 3 matrices for LLaMA's SwiGLU and 2 for CLIP's MLP. For a decoder
  prefill this is the field's 4nd² + 2n²d + 3ndm (PDrop's correction of FastV's 2ndm), printed by the
  papers as "FLOPs" although it counts MACs: 576 image tokens on LLaVA-1.5-7B give 3.817 T.
Components: vision tower (per crop/frame, every layer, as the reference code runs it, + patch
embedding), projector (on the tokens it projects), LLM prefill, LLM decode per new token (context
growing), LM head (last prefill position and each new token). A method is costed by what the
registry says it is (`llava_patch.method_info`): one that takes no budget keeps everything; a
vision-stage method keeps `keep` patches per unit before the projector; an LLM-stage method projects
every patch and runs each decoder layer l over the text and its own count of visual tokens s[l], its
**layer schedule**: the method's own (`layer_schedule`: FastV K layers over all N then the kept ones;
FitPrune its recipe, as executed here — a layer runs whole, its deletions leave after it) or one passed
in (`schedule=`, e.g. SparseVLM's as measured, `handle.last_layer_visual_tokens`). FitPrune can also
be counted as its authors count it (`counting="authors"`): layer l's attention (q, k, v, scores) over
s[l] and its output projection and MLP over s[l] − delete[l]. KV cache: a layer caches what its
attention saw; 2 (K, V) × Σ_l tokens[l] × KV width × bytes per value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

from ..budget import keep_for_ratio
from ..registry import create_method, method_info


@dataclass(frozen=True)
class TransformerSpec:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    mlp_matrices: int  # 3 (SwiGLU) or 2 (CLIP)

    def layer_macs(self, queries: int, keys: int) -> int:
        return self.attention_macs(queries, keys) + self.output_macs(queries)

    def attention_macs(self, queries: int, keys: int) -> int:
        """q, k, v projections and the scores and weighted sum: the part of a layer before o_proj."""
        kv_width = self.kv_heads * (self.hidden // self.heads)
        return queries * self.hidden * (self.hidden + 2 * kv_width) + 2 * queries * keys * self.hidden

    def output_macs(self, queries: int) -> int:
        """The output projection and the MLP."""
        return queries * self.hidden * self.hidden + self.mlp_matrices * queries * self.hidden * self.intermediate

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * (self.hidden // self.heads) * bytes_per_value


@dataclass(frozen=True)
class VLMSpec:
    name: str
    vision: TransformerSpec
    image_size: int
    patch_size: int
    units: int  # vision passes per sample: 1 image, 5 crops (NeXT, paper grid), 8 frames (Video-LLaVA)
    llm: TransformerSpec
    vocab: int

    @property
    def patches(self) -> int:  # per unit
        return (self.image_size // self.patch_size) ** 2

    @property
    def visual_tokens(self) -> int:  # per sample, unpruned
        return self.units * self.patches


_CLIP_L = TransformerSpec(layers=24, hidden=1024, intermediate=4096, heads=16, kv_heads=16, mlp_matrices=2)
_VICUNA_7B = TransformerSpec(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, mlp_matrices=3)
_VICUNA_13B = TransformerSpec(layers=40, hidden=5120, intermediate=13824, heads=40, kv_heads=40, mlp_matrices=3)
MODELS = {
    "llava-1.5-7b": VLMSpec("llava-1.5-7b", _CLIP_L, 336, 14, 1, _VICUNA_7B, 32000),
    "llava-1.5-13b": VLMSpec("llava-1.5-13b", _CLIP_L, 336, 14, 1, _VICUNA_13B, 32000),
    "llava-next-7b": VLMSpec("llava-next-7b", _CLIP_L, 336, 14, 5, _VICUNA_7B, 32000),
    "video-llava-7b": VLMSpec("video-llava-7b", _CLIP_L, 224, 14, 8, _VICUNA_7B, 32000),
}


def spec_from_config(config, name: str = "custom", units: int = 1) -> VLMSpec:
    """A VLMSpec from a transformers Llava/LlavaNext/VideoLlava config (for scaled-down or new models)."""
    vision, text = config.vision_config, config.text_config
    return VLMSpec(
        name,
        TransformerSpec(vision.num_hidden_layers, vision.hidden_size, vision.intermediate_size,
                        vision.num_attention_heads, vision.num_attention_heads, 2),
        vision.image_size, vision.patch_size, units,
        TransformerSpec(text.num_hidden_layers, text.hidden_size, text.intermediate_size, text.num_attention_heads,
                        text.num_key_value_heads, 3),
        text.vocab_size,
    )


def estimate(model: str | VLMSpec, method: str = "none", *, keep: int | None = None,
             reduction_ratio: float | None = None, text_tokens: int = 1, new_tokens: int = 0,
             llm_layer: int | None = None, bytes_per_value: int = 2, schedule: list[int] | None = None,
             recipe: str | Path | None = None, counting: str = "executed") -> dict:
    """Cost of one sample with a registered method (unknown names raise ValueError listing the known
    ones). `keep` is per vision unit (crop/frame) for vision-stage methods and per sample for LLM-stage
    ones; `reduction_ratio` is per unit for both (LLM stage: round(N·(1−R)) of the sample's N; FitPrune:
    its recipe's FLOPs-reduction target).

    LLM-stage methods are costed layer by layer from their schedule s (visual tokens each decoder layer
    processes; `layer_visual_tokens` in the result):
    `schedule`: a measured one (one count per decoder layer, e.g. `handle.last_layer_visual_tokens[i]`);
        then the budget is optional. Required for SparseVLM, whose counts depend on the sample.
    otherwise the method's own (`layer_schedule`), with `llm_layer` (FastV's K; default the method's)
        and `recipe` (FitPrune: a recipe file; default the authors' published LLaVA-1.5-7B recipe for
        `reduction_ratio`, or for `keep` = round(576·(1−R))).
    `counting`: "executed" (every layer runs whole on s[l], as this package runs it) or, for FitPrune,
        "authors" (FitPrune's own count: layer l's o_proj and MLP over s[l] − delete[l]; the KV cache,
        stored before the deletion, is the same)."""
    spec = _spec(model)
    info = method_info(method)
    llm_stage = info.takes_budget and info.stage == "llm"
    if not llm_stage and (schedule is not None or recipe is not None or llm_layer is not None):
        raise ValueError(f"method {method!r} prunes no visual tokens inside the LLM: schedule, recipe and llm_layer "
                         "are for LLM-stage methods")
    if counting not in ("executed", "authors"):
        raise ValueError(f"counting must be 'executed' or 'authors', got {counting!r}")
    if counting == "authors" and "recipe" not in info.options:
        raise ValueError(f"counting='authors' is FitPrune's own FLOPs count (deletions inside the layer); "
                         f"{method!r} is counted as executed")
    if llm_stage and recipe is not None and keep is None and reduction_ratio is None and schedule is None:
        from ..fitprune_recipe import load_recipe

        reduction_ratio = load_recipe(recipe).flops_reduction_target  # the recipe's own target
    if llm_stage and schedule is not None:
        if keep is not None and reduction_ratio is not None:
            raise ValueError(f"method {method!r}: keep or reduction_ratio, not both")
    else:
        _check_budget(info, keep, reduction_ratio)
    unpruned = spec.visual_tokens
    llm = spec.llm
    if not info.takes_budget:
        kept = unpruned
    elif not llm_stage:
        kept = spec.units * (keep if keep is not None else keep_for_ratio(reduction_ratio, spec.patches))
    vision_tokens = spec.patches + 1  # the [CLS] token rides along in every layer
    vision = spec.units * (spec.vision.layers * spec.vision.layer_macs(vision_tokens, vision_tokens)
                           + spec.patches * 3 * spec.patch_size**2 * spec.vision.hidden)
    if llm_stage:
        seen, output = layer_schedules(spec, method, keep=keep, reduction_ratio=reduction_ratio, llm_layer=llm_layer,
                                       recipe=recipe, counting=counting, schedule=schedule)
        kept = output[-1]  # the visual tokens leaving the last decoder layer
    else:
        seen = output = [kept] * llm.layers
    projected = unpruned if llm_stage else kept  # an LLM-stage method projects every patch
    projector = projected * (spec.vision.hidden * spec.llm.hidden + spec.llm.hidden**2)
    prefill = sum(llm.attention_macs(text_tokens + s, text_tokens + s) + llm.output_macs(text_tokens + o)
                  for s, o in zip(seen, output))
    decode = sum(llm.layer_macs(1, text_tokens + s + step) for step in range(1, new_tokens + 1) for s in seen)
    kv_tokens = sum(text_tokens + s for s in seen) / llm.layers  # layer-averaged tokens held (a layer caches what it saw)
    lm_head = (1 + new_tokens) * llm.hidden * spec.vocab
    macs = {"vision_tower": vision, "projector": projector, "llm_prefill": prefill, "llm_decode": decode, "lm_head": lm_head}
    macs["total"] = sum(macs.values())
    return {
        "model": spec.name, "method": method, "visual_tokens_kept": kept, "visual_tokens_unpruned": unpruned,
        "text_tokens": text_tokens, "new_tokens": new_tokens,
        "layer_visual_tokens": list(seen), "layer_visual_tokens_after_deletion": list(output),
        "layer_mean_visual_tokens": sum(seen) / len(seen),
        "schedule": ("given" if schedule is not None else "method") if llm_stage else "every layer", "counting": counting,
        "macs": macs, "flops": {name: 2 * value for name, value in macs.items()},
        "kv_cache_bytes": math.ceil((kv_tokens + new_tokens) * llm.kv_bytes_per_token(bytes_per_value)),
        "kv_cache_visual_bytes": math.ceil((kv_tokens - text_tokens) * llm.kv_bytes_per_token(bytes_per_value)),
        "units": "MACs count multiply-accumulates; FLOPs = 2·MACs; KV in bytes at "
                 f"{bytes_per_value} bytes per value; decode = the sum over {new_tokens} new tokens",
        "spec": asdict(spec),
    }


def layer_schedules(spec: VLMSpec, method: str, *, keep: int | None = None, reduction_ratio: float | None = None,
                    llm_layer: int | None = None, recipe: str | Path | None = None, counting: str = "executed",
                    schedule: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(visual tokens each decoder layer's attention sees, visual tokens its o_proj and MLP see) for an
    LLM-stage method on one sample of `spec.visual_tokens`: `schedule` when given (checked: one
    non-negative int per layer), else the method's own `layer_schedule` with its budget and options
    checked as `apply` checks them. The two lists differ only for FitPrune with counting="authors"."""
    info = method_info(method)
    layers = spec.llm.layers
    if schedule is not None:
        schedule = list(schedule)
        if len(schedule) != layers or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in schedule):
            raise ValueError(f"schedule must give one non-negative int per decoder layer ({layers} for {spec.name}), "
                             f"got {schedule!r}")
        if counting == "authors":
            raise ValueError("counting='authors' needs the recipe's deletions: pass recipe (or the budget), not schedule")
        return schedule, schedule
    if info.variable_count:
        raise ValueError(f"method {method!r} prunes a sample-dependent number of visual tokens in each layer: pass "
                         "schedule= (`llava-patch cost --schedule`): the counts measured on the sample, e.g. "
                         "handle.last_layer_visual_tokens[i] after a call with the method applied")
    options = {}
    if llm_layer is not None:
        if "layer" not in info.options:
            raise ValueError(f"method {method!r} has no `layer` option (llm_layer is FastV's K)")
        options["layer"] = llm_layer
    if recipe is not None:
        if "recipe" not in info.options:
            raise ValueError(f"method {method!r} takes no recipe")
        options["recipe"] = str(recipe)
    pruner = create_method(method, options)
    pruner.keep, pruner.reduction_ratio = keep, reduction_ratio  # as `apply` attaches it
    pruner.check_llm_budget(keep, reduction_ratio)
    pruner.check_language_model(SimpleNamespace(layers=range(layers)))  # the depth is all it reads
    seen = pruner.layer_schedule(spec.visual_tokens, layers)
    if seen is None:
        raise ValueError(f"method {method!r} states no fixed layer schedule: pass schedule= (measured, e.g. "
                         "handle.last_layer_visual_tokens[i])")
    if counting == "authors":
        return pruner.recipe.schedule(spec.visual_tokens), pruner.recipe.schedule_after_deletion(spec.visual_tokens)
    return list(seen), list(seen)


def _spec(model: str | VLMSpec) -> VLMSpec:
    if isinstance(model, VLMSpec):
        return model
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return MODELS[model]


def _check_budget(info, keep: int | None, reduction_ratio: float | None) -> None:
    """The budget `apply` would accept for the method (the model's sizes aside)."""
    given = (keep is not None) + (reduction_ratio is not None)
    if not info.takes_budget:
        if given:
            raise ValueError(f"method {info.name!r} keeps every token; do not pass keep or reduction_ratio")
        return
    if given != 1:
        raise ValueError(f"method {info.name!r} needs a budget: keep or reduction_ratio, exactly one")
    if info.budgets is not None and (reduction_ratio is not None or keep not in info.budgets):
        raise ValueError(f"method {info.name!r} is defined for keep = {', '.join(map(str, info.budgets))} only")
