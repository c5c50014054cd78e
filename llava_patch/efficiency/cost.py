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
vision-stage method keeps `keep` patches per unit before the projector; an LLM-stage method (FastV)
projects every patch and runs layers < K over all tokens, layers ≥ K over the kept ones. KV cache:
2 (K, V) × layers × tokens × KV width × bytes per value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..budget import keep_for_ratio
from ..registry import method_info


@dataclass(frozen=True)
class TransformerSpec:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    mlp_matrices: int  # 3 (SwiGLU) or 2 (CLIP)

    def layer_macs(self, queries: int, keys: int) -> int:
        head_dim = self.hidden // self.heads
        kv_width = self.kv_heads * head_dim
        projections = queries * self.hidden * (2 * self.hidden + 2 * kv_width)
        attention = 2 * queries * keys * self.hidden
        mlp = self.mlp_matrices * queries * self.hidden * self.intermediate
        return projections + attention + mlp

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
             llm_layer: int | None = None, bytes_per_value: int = 2) -> dict:
    """Cost of one sample with a registered method (unknown names raise ValueError listing the known
    ones). `keep` is per vision unit (crop/frame) for vision-stage methods and per sample for LLM-stage
    ones; `reduction_ratio` is per unit for both (LLM stage: round(N·(1−R)) of the sample's N).
    `llm_layer`: where an LLM-stage method prunes (default: the method's own `layer` option, FastV's K)."""
    spec = _spec(model)
    info = method_info(method)
    _check_budget(info, keep, reduction_ratio)
    unpruned = spec.visual_tokens
    llm_stage = info.takes_budget and info.stage == "llm"
    if not info.takes_budget:
        kept = unpruned
    elif llm_stage:
        kept = keep if keep is not None else keep_for_ratio(reduction_ratio, unpruned)
    else:
        kept = spec.units * (keep if keep is not None else keep_for_ratio(reduction_ratio, spec.patches))
    vision_tokens = spec.patches + 1  # the [CLS] token rides along in every layer
    vision = spec.units * (spec.vision.layers * spec.vision.layer_macs(vision_tokens, vision_tokens)
                           + spec.patches * 3 * spec.patch_size**2 * spec.vision.hidden)
    projected = unpruned if llm_stage else kept  # an LLM-stage method projects every patch
    projector = projected * (spec.vision.hidden * spec.llm.hidden + spec.llm.hidden**2)
    llm, full, pruned = spec.llm, text_tokens + unpruned, text_tokens + kept
    if llm_stage:
        layer = info.options.get("layer") if llm_layer is None else llm_layer
        if layer is None:
            raise ValueError(f"method {method!r} declares no `layer` option: pass llm_layer")
        lower, upper = layer, llm.layers - layer
        prefill = lower * llm.layer_macs(full, full) + upper * llm.layer_macs(pruned, pruned)
        decode = sum(lower * llm.layer_macs(1, full + step) + upper * llm.layer_macs(1, pruned + step)
                     for step in range(1, new_tokens + 1))
        kv_tokens = (lower * full + upper * pruned) / llm.layers  # layer-averaged tokens held
    else:
        prefill = llm.layers * llm.layer_macs(pruned, pruned)
        decode = sum(llm.layers * llm.layer_macs(1, pruned + step) for step in range(1, new_tokens + 1))
        kv_tokens = pruned
    lm_head = (1 + new_tokens) * llm.hidden * spec.vocab
    macs = {"vision_tower": vision, "projector": projector, "llm_prefill": prefill, "llm_decode": decode, "lm_head": lm_head}
    macs["total"] = sum(macs.values())
    return {
        "model": spec.name, "method": method, "visual_tokens_kept": kept, "visual_tokens_unpruned": unpruned,
        "text_tokens": text_tokens, "new_tokens": new_tokens,
        "macs": macs, "flops": {name: 2 * value for name, value in macs.items()},
        "kv_cache_bytes": math.ceil((kv_tokens + new_tokens) * llm.kv_bytes_per_token(bytes_per_value)),
        "kv_cache_visual_bytes": math.ceil((kv_tokens - text_tokens) * llm.kv_bytes_per_token(bytes_per_value)),
        "units": "MACs count multiply-accumulates; FLOPs = 2·MACs; KV in bytes at "
                 f"{bytes_per_value} bytes per value; decode = the sum over {new_tokens} new tokens",
        "spec": asdict(spec),
    }


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
