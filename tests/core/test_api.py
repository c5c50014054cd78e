"""Budgets, the method registry and the errors `apply` gives for bad input."""

import pytest
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

import llava_patch
from llava_patch.budget import resolve_keep
from llava_patch.models.tiny import NUM_PATCHES


def test_keep_for_ratio_matches_the_papers_budgets():
    assert [llava_patch.keep_for_ratio(r, 576) for r in (0.0, 0.25, 0.5, 0.75, 0.9, 0.95)] == [576, 432, 288, 144, 58, 29]
    assert [llava_patch.keep_for_ratio(r, 256) for r in (0.25, 0.5, 0.75, 0.9, 0.95)] == [192, 128, 64, 26, 13]
    assert llava_patch.keep_for_ratio(0.9, 5) == 1  # 0.5 rounds up even when 5*0.1 is just below it


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_keep_for_ratio_rejects_ratios_outside_unit_interval(ratio):
    with pytest.raises(ValueError, match="reduction_ratio"):
        llava_patch.keep_for_ratio(ratio, 576)


def test_resolve_keep_needs_exactly_one_budget():
    with pytest.raises(ValueError, match="either keep or reduction_ratio"):
        resolve_keep(10, 0.5, 576)
    with pytest.raises(ValueError, match="pass a budget"):
        resolve_keep(None, None, 576)
    with pytest.raises(ValueError, match="at least 1"):
        resolve_keep(None, 0.9995, 576)


def test_methods_lists_the_registered_names():
    assert {"fastervlm", "vtc_cls", "random", "grid", "none"} <= set(llava_patch.methods())


def _untouched(model):
    return "forward" not in vars(model) and "generate" not in vars(model) and not hasattr(model, "_llava_patch_handle")


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("fastervlm", {"keep": 0}, r"keep=0: at least 1 token must be kept"),
        ("fastervlm", {"keep": NUM_PATCHES + 1}, r"keep=65 is outside \[1, 64\]"),
        ("fastervlm", {"keep": 2.5}, "keep must be an int"),
        ("fastervlm", {"reduction_ratio": 1.0}, r"reduction_ratio must be in \[0, 1\)"),
        ("fastervlm", {"reduction_ratio": -0.5}, r"reduction_ratio must be in \[0, 1\)"),
        ("fastervlm", {}, "pass a budget"),
        ("fastervlm", {"keep": 8, "reduction_ratio": 0.5}, "either keep or reduction_ratio"),
        ("no_such_method", {"keep": 8}, "unknown method 'no_such_method'; registered methods: fastervlm"),
        ("fastervlm", {"keep": 8, "layers": 3}, "unknown option.*'layers' for method 'fastervlm'"),
        ("vtc_cls", {"keep": 8, "layer": 3}, "unknown option.*'layer' for method 'vtc_cls'; valid options: layers, ensemble"),
        ("vtc_cls", {"keep": 8, "layers": 4}, "layers=4 needs encoder layers -1..2"),
        ("vtc_cls", {"keep": 8, "layers": 0}, "layers must be a positive int"),
        ("vtc_cls", {"keep": 8, "ensemble": "median"}, "ensemble must be one of sum, mean, max, min"),
        ("random", {"keep": 8, "seed": "x"}, "seed must be an int"),
        ("none", {"keep": 8}, "keeps every token"),
    ],
)
def test_bad_input_raises_a_clear_error_and_leaves_the_model_untouched(tiny_llava, method, kwargs, message):
    model, _ = tiny_llava
    with pytest.raises(ValueError, match=message):
        llava_patch.apply(model, method, **kwargs)
    assert _untouched(model)
    llava_patch.apply(model, "fastervlm", keep=8).remove()  # and it can still be patched


def test_applying_twice_is_refused_and_keeps_the_first_patch(tiny_llava):
    model, _ = tiny_llava
    handle = llava_patch.apply(model, "fastervlm", keep=8)
    with pytest.raises(RuntimeError, match="already patched.*fastervlm.*handle.remove"):
        llava_patch.apply(model, "vtc_cls", keep=16)
    assert model._llava_patch_handle is handle and handle.active
    handle.remove()
    assert _untouched(model)
    handle.remove()  # a second remove is harmless


@pytest.mark.parametrize("build", ["llama", "clip"])
def test_unsupported_models_are_named_in_the_error(build):
    if build == "llama":
        model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, vocab_size=10))
        name = "LlamaForCausalLM"
    else:
        model = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, image_size=28, patch_size=14))
        name = "CLIPVisionModel"
    with pytest.raises(ValueError, match=f"unsupported model {name}; llava_patch supports: .*LlavaForConditionalGeneration"):
        llava_patch.apply(model, "fastervlm", keep=1)
    assert _untouched(model)


def test_unsupported_llava_configurations_are_refused(tiny_llava):
    model, _ = tiny_llava
    model.config.vision_feature_select_strategy = "full"
    with pytest.raises(ValueError, match="vision_feature_select_strategy='full'"):
        llava_patch.apply(model, "fastervlm", keep=8)
    model.config.vision_feature_select_strategy = "default"
    model.config.vision_feature_layer = [-2, -1]
    with pytest.raises(ValueError, match="only a single feature layer"):
        llava_patch.apply(model, "fastervlm", keep=8)
    model.config.vision_feature_layer = -7
    with pytest.raises(ValueError, match="vision_feature_layer=-7 does not name"):
        llava_patch.apply(model, "fastervlm", keep=8)
    assert _untouched(model)
