"""The in-LLM methods (SparseVLM, FitPrune) on LLaVA-NeXT and Video-LLaVA, both backends: a sample's crops
or frames are ranked jointly, and each layer's count is what the method's schedule says."""

import pytest
import torch
from transformers import AutoProcessor, LlavaNextForConditionalGeneration

import llava_patch
from llava_patch.fitprune_recipe import Recipe
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import prompt, random_image

SPARSEVLM = {"keep": 100, "scale": 4.0, "bias": 0.0}


@pytest.fixture
def recipe(tmp_path):
    return str(Recipe(delete=[30, 0, 40, 0], flops_reduction_target=0.25, visual_tokens=320).save(tmp_path / "r.json"))


def test_next_crops_are_ranked_jointly(tiny_next_dir, recipe):
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_next_dir)
    inputs = processor(images=[random_image(1, (60, 120)), random_image(2, (100, 50))],
                       text=[prompt("what ?"), prompt("w1 w2")], return_tensors="pt", padding=True)
    native = (inputs["input_ids"] == model.config.image_token_id).sum(dim=1).tolist()
    with llava_patch.apply(model, "fitprune", reduction_ratio=0.25, recipe=recipe) as handle:
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False, suppress_tokens=[model.config.image_token_id])
        assert handle.last_layer_visual_tokens == [handle.method_object.layer_schedule(n, 4) for n in native]
        assert [len(kept) for kept in handle.last_selection] == [n - 70 for n in native]
        assert all(kept.max() >= 64 for kept in handle.last_selection)  # beyond the first crop: ranked jointly
    assert output.shape[1] == inputs["input_ids"].shape[1] + 3
    with llava_patch.apply(model, "sparsevlm", **SPARSEVLM) as handle:
        model.generate(**inputs, max_new_tokens=3, do_sample=False, suppress_tokens=[model.config.image_token_id])
        assert [layers[0] for layers in handle.last_layer_visual_tokens] == native
        assert all(layers[-1] < n for layers, n in zip(handle.last_layer_visual_tokens, native))


@pytest.mark.parametrize("mode, visual_tokens", [("paper", 320), ("native", None)])
def test_the_original_next_backend_prunes_in_both_modes(tiny_original_next, recipe, mode, visual_tokens):
    vlm = load_model(tiny_original_next, backend="llava", device="cpu")
    image = random_image(1, (60, 120))
    with llava_patch.apply(vlm.model, "fitprune", mode=mode, reduction_ratio=0.25, recipe=recipe) as handle:
        vlm.generate([image], ["what ?"], max_new_tokens=3)
        unpruned = handle.last_layer_visual_tokens[0][0]
        assert unpruned == visual_tokens or visual_tokens is None
        assert handle.last_layer_visual_tokens == [handle.method_object.layer_schedule(unpruned, 4)]
    with llava_patch.apply(vlm.model, "sparsevlm", mode=mode, **SPARSEVLM) as handle:
        vlm.generate([image], ["what ?"], max_new_tokens=3)
        assert handle.last_layer_visual_tokens[0][0] == unpruned > handle.last_visual_tokens[0]


def test_video_frames_are_ranked_jointly(tiny_video_dir, tmp_path):
    from transformers import AutoTokenizer, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

    from llava_patch.models.media import video_llava_inputs

    model = VideoLlavaForConditionalGeneration.from_pretrained(tiny_video_dir).eval()
    tokenizer, image_processor = AutoTokenizer.from_pretrained(tiny_video_dir), VideoLlavaImageProcessor.from_pretrained(tiny_video_dir)
    frames = [random_image(40 + f, (60, 80)) for f in range(8)]
    inputs = video_llava_inputs(model.config, tokenizer, image_processor, ["USER : <video> what ? ASSISTANT :"], videos=[frames])
    recipe = str(Recipe(delete=[100, 0, 100, 0], flops_reduction_target=0.4, visual_tokens=512).save(tmp_path / "v.json"))
    with llava_patch.apply(model, "fitprune", reduction_ratio=0.4, recipe=recipe) as handle:
        with torch.no_grad():
            model(**inputs)
        assert handle.last_layer_visual_tokens == [[512, 412, 412, 312]]  # 8 frames × 64 patches, [CLS] dropped
    with llava_patch.apply(model, "sparsevlm", **SPARSEVLM) as handle:
        with torch.no_grad():
            model(**inputs)
        assert handle.last_layer_visual_tokens[0][0] == 512 > handle.last_visual_tokens[0]


def test_attention_rows_reduced_a_few_heads_at_a_time_equal_the_full_maps():
    from types import SimpleNamespace

    from llava_patch.llm_pruning import PruningPoint, Sequence

    torch.manual_seed(0)
    heads, kv_heads, head_dim, length = 6, 2, 4, 9
    attention = SimpleNamespace(head_dim=head_dim, scaling=head_dim ** -0.5, num_key_value_groups=heads // kv_heads)
    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1]])
    sequence = Sequence(torch.zeros(1, length, 8), torch.arange(length)[None], padding,
                        torch.full((1, length), -1), torch.arange(length)[None])
    cos, sin = torch.randn(1, length, head_dim), torch.randn(1, length, head_dim)
    point = PruningPoint(1, sequence, torch.randn(1, length, heads * head_dim), torch.randn(1, length, kv_heads * head_dim),
                         cos, sin, attention)
    queries = torch.tensor([3, 5, 8])
    full = point.attention_rows(0, queries)
    assert full.shape == (heads, 3, length) and torch.all(full[:, :, :2] == 0) and torch.all(full[:, 0, 4:] == 0)
    torch.testing.assert_close(full.sum(dim=-1), torch.ones(heads, 3))
    torch.testing.assert_close(point.attention_rows(0, queries, reduce="max", heads_per_chunk=4), full.amax(dim=0))
    torch.testing.assert_close(point.attention_rows(0, queries, reduce="mean", heads_per_chunk=4), full.mean(dim=0))
