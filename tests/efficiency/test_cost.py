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


# --- LLM-stage methods with layer-wise schedules (SparseVLM, FitPrune) ----------------------------------------
# FitPrune's own FLOPs count (ywh187/FitPrune d28e418, LLaVA_1.5/llava/eval/statistical_analysis.py):
# `calculate_origin_flops` (lines 279-280) = 32 · (576·4096²·3 + 2·576²·4096 + 576·4096² + 3·4096·11008·576), visual
# tokens only; `fit_model`/`rest_flops` (lines 98-105, 138, 272) charge a layer's q, k, v and scores on the tokens
# its attention sees and its o_proj + MLP on those left after its deletion. Re-implemented here from that reading.
def _fitprune_origin_flops():
    return 32 * ((576 * 4096 * 4096 * 3 + 576 * 576 * 4096 * 2 + 576 * 4096 * 4096) + 4096 * 11008 * 576 * 3)


def _fitprune_recipe_flops(delete, tokens=576, d=4096, m=11008):
    total = 0
    for count in delete:
        total += tokens * d * d * 3 + 2 * tokens * tokens * d
        tokens -= count
        total += tokens * d * d + 3 * m * d * tokens
    return total


def test_fitprunes_unpruned_count_is_ours_over_the_visual_tokens():
    assert estimate("llava-1.5-7b", "none", text_tokens=0)["macs"]["llm_prefill"] == _fitprune_origin_flops() == 3_817_152_184_320


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9])
def test_fitprune_published_recipes_by_the_authors_count_and_as_executed(ratio):
    from llava_patch.fitprune_recipe import published_recipe

    recipe = published_recipe(ratio)
    unpruned = estimate("llava-1.5-7b", "none", text_tokens=0)["macs"]["llm_prefill"]
    authors = estimate("llava-1.5-7b", "fitprune", reduction_ratio=ratio, text_tokens=0, counting="authors")
    executed = estimate("llava-1.5-7b", "fitprune", reduction_ratio=ratio, text_tokens=0)
    assert authors["macs"]["llm_prefill"] == _fitprune_recipe_flops(recipe.delete)
    reduction = 1 - authors["macs"]["llm_prefill"] / unpruned
    assert reduction == pytest.approx(recipe.flops_reduction(), abs=1e-12)
    # the target each recipe is keyed by (modeling_llama.py lines 358-390) is missed, by at most 2.1 points from 30 % on
    assert reduction < ratio and (ratio < 0.3 or ratio - reduction < 0.021)
    # as executed here a layer runs whole before its deletions leave: its o_proj and MLP see them too
    assert executed["macs"]["llm_prefill"] > authors["macs"]["llm_prefill"]
    assert executed["layer_visual_tokens"] == authors["layer_visual_tokens"] == recipe.schedule(576)
    assert authors["layer_visual_tokens_after_deletion"] == recipe.schedule_after_deletion(576)
    # either way layer l caches what its attention saw: KV = the layer mean of the schedule, 0.5 MiB a token
    assert authors["kv_cache_visual_bytes"] == executed["kv_cache_visual_bytes"] == recipe.layer_mean_visual_tokens(576) * MIB / 2
    assert executed["layer_mean_visual_tokens"] == recipe.layer_mean_visual_tokens(576)


def test_fitprune_90_on_llava_15_7b():
    unpruned = estimate("llava-1.5-7b", "none", text_tokens=0)["macs"]["llm_prefill"]
    authors = estimate("llava-1.5-7b", "fitprune", keep=58, text_tokens=0, counting="authors")
    executed = estimate("llava-1.5-7b", "fitprune", reduction_ratio=0.9, text_tokens=0)
    assert round(1 - authors["macs"]["llm_prefill"] / unpruned, 4) == 0.8968
    assert round(1 - executed["macs"]["llm_prefill"] / unpruned, 4) == 0.8753
    assert executed["visual_tokens_kept"] == 37 and executed["layer_mean_visual_tokens"] == 72.84375
    assert _within(authors["kv_cache_visual_bytes"] / MIB, 36.42, 0.001)


def test_a_recipe_file_is_costed_for_its_own_model_and_target(tmp_path):
    from llava_patch.fitprune_recipe import Recipe, RecipeError

    spec = MODELS["llava-1.5-7b"]
    path = Recipe(delete=[100, 100] + [0] * 30, flops_reduction_target=0.25, visual_tokens=576).save(tmp_path / "r.json")
    cost = estimate(spec, "fitprune", recipe=path, text_tokens=10, new_tokens=2)  # the budget is the recipe's
    assert cost["layer_visual_tokens"] == [576, 476] + [376] * 30 and cost["visual_tokens_kept"] == 376
    llm = spec.llm
    assert cost["macs"]["llm_prefill"] == llm.layer_macs(586, 586) + llm.layer_macs(486, 486) + 30 * llm.layer_macs(386, 386)
    assert cost["macs"]["llm_decode"] == sum(llm.layer_macs(1, 586 + t) + llm.layer_macs(1, 486 + t) + 30 * llm.layer_macs(1, 386 + t)
                                             for t in (1, 2))
    assert cost["kv_cache_bytes"] == (586 + 486 + 30 * 386 + 32 * 2) * MIB // 2 // 32
    with pytest.raises(ValueError, match="fitted for a FLOPs reduction of 0.25"):
        estimate(spec, "fitprune", recipe=path, reduction_ratio=0.5)
    with pytest.raises(RecipeError, match="32 entries .* 40 decoder layers"):
        estimate("llava-1.5-13b", "fitprune", recipe=path)
    with pytest.raises(ValueError, match="no published recipe"):
        estimate(spec, "fitprune", reduction_ratio=0.95)


def test_fastv_as_a_schedule_gives_the_numbers_it_always_had():
    for kw in ({"keep": 58}, {"reduction_ratio": 0.5}):
        by_method = estimate("llava-next-7b", "fastv", **kw, text_tokens=60, new_tokens=3)
        assert by_method["layer_visual_tokens"] == [2880] * 2 + [by_method["visual_tokens_kept"]] * 30
        given = estimate("llava-next-7b", "fastv", schedule=by_method["layer_visual_tokens"], text_tokens=60, new_tokens=3)
        assert given["macs"] == by_method["macs"] and given["kv_cache_bytes"] == by_method["kv_cache_bytes"]


def test_sparsevlm_needs_a_measured_schedule_and_is_counted_as_its_authors_count():
    with pytest.raises(ValueError, match="sample-dependent .* pass schedule="):
        estimate("llava-1.5-7b", "sparsevlm", keep=64)
    schedule = [576] * 3 + [180] * 4 + [90] * 9 + [50] * 4 + [30] * 12  # after layers 2, 6, 15, 19
    cost = estimate("llava-1.5-7b", "sparsevlm", schedule=schedule, text_tokens=60)
    # Gumpest/SparseVLMs' own count (from 14cb5a9, 2025-03, modelling_sparse_llama.py: `all_FLOPs`), printed as
    # "TFLOPs": every decoder layer 4nd² + 2n²d + 3ndm over n = its whole input sequence (text included)
    d, m = 4096, 11008
    theirs = sum(4 * n * d * d + 2 * n * n * d + 3 * n * d * m for n in (60 + s for s in schedule))
    assert cost["macs"]["llm_prefill"] == theirs
    assert cost["layer_mean_visual_tokens"] == sum(schedule) / 32 and cost["visual_tokens_kept"] == 30
    for bad in ([576] * 31, [576] * 31 + [-1]):
        with pytest.raises(ValueError, match="one non-negative int per decoder layer"):
            estimate("llava-1.5-7b", "sparsevlm", schedule=bad)
    with pytest.raises(ValueError, match="prunes no visual tokens inside the LLM"):
        estimate("llava-1.5-7b", "fastervlm", keep=64, schedule=schedule)
    with pytest.raises(ValueError, match="FitPrune's own FLOPs count"):
        estimate("llava-1.5-7b", "fastv", keep=64, counting="authors")


@pytest.mark.parametrize("method, options", [("sparsevlm", {"keep": 20, "layers": (1,), "scale": 4.0, "bias": 0.0}),
                                             ("fastv", {"keep": 16}), ("fitprune", {"reduction_ratio": 0.25})])
def test_the_measured_schedule_gives_the_cache_the_model_holds(tiny_llava, tmp_path, method, options):
    import torch

    import llava_patch
    from llava_patch.fitprune_recipe import Recipe
    from llava_patch.models.tiny import prompt, random_image

    model, processor = tiny_llava
    if method == "fitprune":
        options = {**options, "recipe": str(Recipe(delete=[9, 0, 12, 5], flops_reduction_target=0.25,
                                                   visual_tokens=64).save(tmp_path / "recipe.json"))}
    inputs = processor(images=[random_image(6, size=(102, 64))], text=[prompt("what is in the image ?")],
                       return_tensors="pt")
    handle = llava_patch.apply(model, method, **options)
    with torch.no_grad():
        cache = model(**inputs, use_cache=True).past_key_values
    schedule = handle.last_layer_visual_tokens[0]
    spec = spec_from_config(model.config, "tiny")
    text = inputs["input_ids"].shape[1] - spec.visual_tokens
    cost = estimate(spec, method, schedule=schedule, text_tokens=text, bytes_per_value=4)
    assert cost["kv_cache_bytes"] == sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert cost["visual_tokens_kept"] == handle.last_visual_tokens[0] and schedule[0] == 64 and schedule[-1] < 64


def test_the_cost_command_takes_a_recipe_a_schedule_and_the_counting(tmp_path, capsys):
    import json

    from llava_patch.cli import main
    from llava_patch.fitprune_recipe import Recipe

    path = Recipe(delete=[100, 100] + [0] * 30, flops_reduction_target=0.25, visual_tokens=576).save(tmp_path / "r.json")
    assert main(["cost", "--method", "fitprune", "--recipe", str(path), "--counting", "authors", "--text-tokens", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["layer_visual_tokens_after_deletion"][:2] == [476, 376] and printed["counting"] == "authors"
    schedule = [576] * 3 + [100] * 29
    (tmp_path / "s.json").write_text(json.dumps(schedule))
    for given in (",".join(map(str, schedule)), str(tmp_path / "s.json")):
        assert main(["cost", "--method", "sparsevlm", "--schedule", given]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["layer_visual_tokens"] == schedule and printed["schedule"] == "given"
    assert main(["cost", "--method", "sparsevlm", "--keep", "64"]) == 2
    assert "--schedule" in capsys.readouterr().err
