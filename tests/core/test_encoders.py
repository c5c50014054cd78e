"""The vision path on a second encoder family: a tiny LLaVA whose tower is DINOv2 (`Dinov2Model`),
against the tower's own eager attention maps; and the encoder registry."""

import pytest
import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    SiglipVisionConfig,
    SiglipVisionModel,
)

import llava_patch
from llava_patch.encoders.clip import ClipEncoder
from llava_patch.encoders.dinov2 import Dinov2Encoder
from llava_patch.models.tiny import DINOV2_NUM_PATCHES, load, prompt, random_image
from llava_patch.registry import find_encoder
from llava_patch.tower import llava_vision_geometry

QUESTIONS = ["what is in the image ?", "describe the image", "colour ?"]
TINY_TOWER = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14)


def _inputs(processor, seeds):
    images = [random_image(seed, size=(150 + 20 * seed, 260 - 15 * seed)) for seed in seeds]
    texts = [prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(len(seeds))]
    return processor(images=images, text=texts, return_tensors="pt", padding=True)


@pytest.fixture
def tiny_dinov2(tiny_dinov2_dir):
    """A freshly loaded (model, processor) pair: tests may patch the model freely."""
    torch.manual_seed(0)
    return load(tiny_dinov2_dir)


def _eager_cls_rows(directory, pixel_values) -> dict[int, torch.Tensor]:
    """layer → (B, P) head-mean [CLS] row over the patches, from the tower's own eager attention maps."""
    model, _ = load(directory, attn_implementation="eager")
    with torch.no_grad():
        attentions = model.model.vision_tower(pixel_values, output_attentions=True).attentions
    return {layer: maps[:, :, 0, 1:].mean(dim=1) for layer, maps in enumerate(attentions)}


def _top_k(scores, keep):
    return scores.topk(keep, dim=-1).indices.sort(dim=-1).values


@pytest.mark.parametrize("method, layers", [("fastervlm", 1), ("vtc_cls", 3)])
def test_cls_rows_and_selection_match_the_towers_eager_attention(tiny_dinov2, tiny_dinov2_dir, method, layers):
    """FasterVLM scores the select layer's row, VTC-CLS (default) sums those of the 3 layers ending there."""
    model, processor = tiny_dinov2
    inputs = _inputs(processor, [0, 1, 2])
    rows = _eager_cls_rows(tiny_dinov2_dir, inputs["pixel_values"])
    select_layer = llava_vision_geometry(model.config).select_layer
    reference = torch.stack([rows[layer] for layer in range(select_layer - layers + 1, select_layer + 1)]).sum(0)
    with llava_patch.apply(model, method, keep=20) as handle, torch.no_grad():
        model(**inputs)
    assert model.model.vision_tower.config._attn_implementation == "sdpa"  # the hooks need no eager maps
    torch.testing.assert_close(torch.stack(handle.last_scores), reference, rtol=1e-5, atol=1e-7)
    assert torch.equal(torch.stack(handle.last_selection), _top_k(reference, 20))


def _budgets(name: str) -> list[dict]:
    info = llava_patch.method_info(name)
    if not info.takes_budget:
        return [{}]
    if info.needs_recipe:  # FitPrune: the test writes a recipe for this model (FITPRUNE_DELETE)
        return [{"reduction_ratio": 0.5}]
    if info.budgets is not None:
        return [{"keep": keep} for keep in info.budgets if keep <= DINOV2_NUM_PATCHES]
    return [{"keep": 16}]


FITPRUNE_DELETE = [60, 40, 28, 0]  # 128 of 256 visual tokens leave over the tiny LLM's 4 layers
EVERY_METHOD = [pytest.param(name, budget, id=f"{name}-{budget.get('keep', 'all')}")
                for name in llava_patch.methods() for budget in _budgets(name)]


@pytest.mark.parametrize("method, budget", EVERY_METHOD)
def test_every_method_generates_with_its_budget_of_visual_tokens(tiny_dinov2, method, budget, tmp_path):
    model, processor = tiny_dinov2
    inputs = _inputs(processor, [3, 4])
    if llava_patch.method_info(method).needs_recipe:
        from llava_patch.fitprune_recipe import Recipe

        recipe = Recipe(delete=FITPRUNE_DELETE, flops_reduction_target=0.5, visual_tokens=DINOV2_NUM_PATCHES)
        budget = {**budget, "recipe": str(recipe.save(tmp_path / "recipe.json"))}
    with llava_patch.apply(model, method, **budget) as handle:
        output = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                suppress_tokens=[model.config.image_token_id])
        if method == "prumerge_plus":  # its count varies per image: the kept tokens and one merged extra
            expected = [len(kept) + 1 for kept in handle.last_selection]
        elif method == "sparsevlm":  # its count varies per image: what the last layer processed
            expected = [layers[-1] for layers in handle.last_layer_visual_tokens]
        elif method == "fitprune":
            expected = [DINOV2_NUM_PATCHES - sum(FITPRUNE_DELETE)] * 2
        else:
            expected = [budget.get("keep", DINOV2_NUM_PATCHES)] * 2
        assert handle.last_visual_tokens == expected
    assert output.shape == (2, inputs["input_ids"].shape[1] + 4)


@pytest.mark.parametrize("method, budget", [("fastervlm", {"keep": DINOV2_NUM_PATCHES}),
                                            ("vtc_cls", {"keep": DINOV2_NUM_PATCHES}), ("none", {})])
def test_keeping_every_patch_is_bit_identical_to_the_unpatched_model(tiny_dinov2, method, budget):
    model, processor = tiny_dinov2
    inputs = _inputs(processor, [5, 6])
    with torch.no_grad():
        reference = model(**inputs).logits
        with llava_patch.apply(model, method, **budget):
            assert torch.equal(model(**inputs).logits, reference)


def test_find_encoder_picks_the_family():
    assert type(find_encoder(CLIPVisionModel(CLIPVisionConfig(**TINY_TOWER)))) is ClipEncoder
    assert type(find_encoder(CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_TOWER)))) is ClipEncoder
    assert type(find_encoder(Dinov2Model(Dinov2Config(**TINY_TOWER)))) is Dinov2Encoder


@pytest.mark.parametrize("build", [
    pytest.param(lambda: SiglipVisionModel(SiglipVisionConfig(**TINY_TOWER)), id="siglip"),  # no [CLS] token
    pytest.param(lambda: Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**TINY_TOWER)),
                 id="dinov2-registers"),  # its register tokens would pass for patches
    pytest.param(lambda: torch.nn.Linear(2, 2), id="not-a-tower"),
])
def test_unsupported_towers_raise_a_clear_error(build):
    tower = build()
    with pytest.raises(ValueError, match=f"unsupported vision tower {type(tower).__name__}: pruning needs a ViT "
                                         r"with a \[CLS\] token of a supported family: CLIP .*; DINOv2 without registers"):
        find_encoder(tower)


def test_a_llava_with_an_unsupported_tower_is_refused_untouched():
    text = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=10)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=SiglipVisionConfig(**TINY_TOWER), text_config=text,
                                                      vision_feature_layer=-1, vision_feature_select_strategy="default"))
    with pytest.raises(ValueError, match="unsupported vision tower SiglipVisionModel"):
        llava_patch.apply(model, "fastervlm", keep=1)
    assert "forward" not in vars(model) and not hasattr(model, "_llava_patch_handle")
