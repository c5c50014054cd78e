"""The cost model against the field's anchors (docs/efficiency.md §1) and FasterVLM's efficiency table."""

import pytest

from llava_patch.efficiency.cost import MODELS, estimate, spec_from_config
from llava_patch.paper.published import load_efficiency

MIB = 2**20


def _within(value, expected, fraction=0.01):
    return abs(value - expected) <= fraction * abs(expected)


def test_576_image_tokens_on_llava_15_7b_are_3_817_t_macs():
    cost = estimate("llava-1.5-7b", "none", text_tokens=0)
    assert cost["macs"]["llm_prefill"] == 32 * (4 * 576 * 4096**2 + 2 * 576**2 * 4096 + 3 * 576 * 4096 * 11008)
    assert _within(cost["macs"]["llm_prefill"] / 1e12, 3.817, 0.001)
    assert cost["flops"]["llm_prefill"] == 2 * cost["macs"]["llm_prefill"]


def test_kv_cache_is_half_a_mib_per_token_on_llava_15_7b():
    assert MODELS["llava-1.5-7b"].llm.kv_bytes_per_token() == MIB // 2


# FasterVLM's efficiency table (LLaVA-NeXT-7B, POPE): true FLOPs of the whole model (vision tower over
# 5 crops, every layer, + LLM prefill over the visual tokens and ~1 text token); KV storage of the visual tokens.
ASSUMPTIONS = dict(text_tokens=1, new_tokens=0)


def _published(method, ratio, quantity):
    (row,) = [r for r in load_efficiency() if r["paper"] == "fastervlm" and r["method"] == method
              and abs((r["reduction_ratio"] or 0) - ratio) < 1e-6 and r["quantity"] == quantity]
    return row["value"]


@pytest.mark.parametrize("method, ratio", [("none", 0.0), ("fastervlm", 0.25), ("fastervlm", 0.5), ("fastervlm", 0.75),
                                           ("fastervlm", 0.9), ("fastervlm", 0.95), ("fastv", 0.25), ("fastv", 0.5),
                                           ("fastv", 0.75), ("fastv", 0.9), ("fastv", 0.95)])
def test_fastervlm_efficiency_table_flops_and_kv_storage_within_one_percent(method, ratio):
    budget = {} if method == "none" else {"reduction_ratio": ratio}
    cost = estimate("llava-next-7b", method, **budget, **ASSUMPTIONS)
    flops = (cost["flops"]["vision_tower"] + cost["flops"]["llm_prefill"]) / 1e12
    assert _within(flops, _published(method, ratio, "flops")), (flops, _published(method, ratio, "flops"))
    kv = cost["kv_cache_visual_bytes"] / 1e6 / 1.048576  # MB as printed = MiB
    assert _within(kv, _published(method, ratio, "kv_storage")), (kv, _published(method, ratio, "kv_storage"))


def test_anchor_values_named_in_the_issue():
    next_cost = lambda **kw: estimate("llava-next-7b", **kw, **ASSUMPTIONS)  # noqa: E731
    assert _within((next_cost()["flops"]["vision_tower"] + next_cost()["flops"]["llm_prefill"]) / 1e12, 43.58)
    faster = next_cost(method="fastervlm", reduction_ratio=0.95)
    assert _within((faster["flops"]["vision_tower"] + faster["flops"]["llm_prefill"]) / 1e12, 3.80)
    assert _within(next_cost()["kv_cache_visual_bytes"] / MIB, 1440)
    assert _within(faster["kv_cache_visual_bytes"] / MIB, 72.5)
    assert _within(next_cost(method="fastv", reduction_ratio=0.95)["kv_cache_visual_bytes"] / MIB, 158.59)


def test_decode_grows_with_context_and_pruning_shrinks_every_llm_component():
    full = estimate("llava-1.5-7b", "none", text_tokens=60, new_tokens=8)
    pruned = estimate("llava-1.5-7b", "fastervlm", reduction_ratio=0.95, text_tokens=60, new_tokens=8)
    assert pruned["visual_tokens_kept"] == 29
    for part in ("llm_prefill", "llm_decode", "projector"):
        assert pruned["macs"][part] < full["macs"][part]
    assert pruned["macs"]["vision_tower"] == full["macs"]["vision_tower"]  # the tower is not pruned
    video = estimate("video-llava-7b", "fastervlm", keep=26)
    assert video["visual_tokens_kept"] == 208 and video["visual_tokens_unpruned"] == 2048


def test_specs_come_from_configs(tiny_llava):
    model, _ = tiny_llava
    spec = spec_from_config(model.config, "tiny")
    assert spec.patches == 64 and spec.llm.layers == 4 and spec.llm.kv_heads == 2
    assert estimate(spec, "vtc_cls", keep=8)["visual_tokens_kept"] == 8


def test_methods_are_costed_by_what_the_registry_says_and_unknown_ones_are_refused():
    with pytest.raises(ValueError, match="unknown method 'fastvlm'; registered methods: fastervlm, fastv, fitprune, grid, none"):
        estimate("llava-1.5-7b", "fastvlm", reduction_ratio=0.95)
    with pytest.raises(ValueError, match="unknown model 'llava-2'; known: llava-1.5-7b"):
        estimate("llava-2", "none")
    # every vision-stage method with the same budget costs the same; the LLM stage projects every patch
    vision = [estimate("llava-1.5-7b", name, keep=58, text_tokens=60) for name in ("fastervlm", "vtc_cls", "grid", "random")]
    assert all(cost["macs"] == vision[0]["macs"] for cost in vision)
    fastv = estimate("llava-1.5-7b", "fastv", keep=58, text_tokens=60)
    assert fastv["macs"]["projector"] == estimate("llava-1.5-7b", "none", text_tokens=60)["macs"]["projector"]
    assert estimate("llava-1.5-7b", "fastv", keep=58, llm_layer=2)["macs"] == estimate("llava-1.5-7b", "fastv", keep=58)["macs"]
    later = estimate("llava-1.5-7b", "fastv", keep=58, text_tokens=60, llm_layer=3)  # one more layer over every token
    assert later["macs"]["llm_prefill"] > fastv["macs"]["llm_prefill"]
    assert estimate("llava-1.5-7b", "prumerge_plus", keep=64)["visual_tokens_kept"] == 64
    for method, budget in (("none", {"keep": 5}), ("fastervlm", {}), ("prumerge_plus", {"reduction_ratio": 0.9}),
                           ("prumerge_plus", {"keep": 100})):
        with pytest.raises(ValueError, match=method):
            estimate("llava-1.5-7b", method, **budget)
