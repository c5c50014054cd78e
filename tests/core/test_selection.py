"""Selectors against independent references computed from eager attention maps."""

import pytest
import torch
import transformers.models.clip.modeling_clip as modeling_clip

import llava_patch
from llava_patch.models.tiny import SELECT_LAYER, load, prompt, random_image

QUESTIONS = ["what is in the image ?", "describe the image", "colour ?", "w1 w2 w3 ?", "w4 is", "the w5"]


def _inputs(processor, seeds):
    images = [random_image(seed, size=(50 + 7 * seed, 90 - 5 * seed)) for seed in seeds]
    texts = [prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(len(seeds))]
    return processor(images=images, text=texts, return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def eager_cls_attention(tiny_llava_dir):
    """Per input batch: layer → (B, P) [CLS] row from output_attentions of an eager-attention copy."""
    model, processor = load(tiny_llava_dir, attn_implementation="eager")

    def compute(inputs):
        with torch.no_grad():
            attentions = model.model.vision_tower(inputs["pixel_values"], output_attentions=True).attentions
        return {layer: maps[:, :, 0, 1:].mean(dim=1) for layer, maps in enumerate(attentions)}

    return compute


def _reference_selection(scores, keep):
    return scores.topk(keep, dim=-1).indices.sort(dim=-1).values


def _run(model, inputs):
    with torch.no_grad():
        model(**inputs)


@pytest.mark.parametrize("keep", [1, 7, 16, 63])
def test_fastervlm_matches_eager_output_attentions(tiny_llava, eager_cls_attention, keep):
    model, processor = tiny_llava
    inputs = _inputs(processor, seeds=range(6))
    reference = eager_cls_attention(inputs)[SELECT_LAYER]
    handle = llava_patch.apply(model, "fastervlm", keep=keep)
    _run(model, inputs)
    assert model.model.vision_tower.config._attn_implementation == "sdpa"
    torch.testing.assert_close(torch.stack(handle.last_scores), reference, rtol=1e-5, atol=1e-7)
    assert torch.equal(torch.stack(handle.last_selection), _reference_selection(reference, keep))
    assert all(selection.dtype == torch.long and selection.ndim == 1 for selection in handle.last_selection)


def test_vtc_cls_with_one_layer_is_fastervlm(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, seeds=range(4))
    with llava_patch.apply(model, "fastervlm", keep=12) as handle:
        _run(model, inputs)
        faster = (handle.last_selection, handle.last_scores)
    with llava_patch.apply(model, "vtc_cls", keep=12, layers=1) as handle:
        _run(model, inputs)
        vtc = (handle.last_selection, handle.last_scores)
    for a, b in zip(faster, vtc):
        assert torch.equal(torch.stack(a), torch.stack(b))


@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize(
    "ensemble, combine",
    [("sum", lambda s: s.sum(0)), ("mean", lambda s: s.mean(0)), ("max", lambda s: s.amax(0)), ("min", lambda s: s.amin(0))],
)
def test_vtc_cls_matches_the_reference_ensemble(tiny_llava, eager_cls_attention, layers, ensemble, combine):
    model, processor = tiny_llava
    inputs = _inputs(processor, seeds=range(2, 7))
    per_layer = eager_cls_attention(inputs)
    # K layers ending at the select layer: 1..2 for K=2, 0..2 for K=3.
    reference = combine(torch.stack([per_layer[layer] for layer in range(SELECT_LAYER - layers + 1, SELECT_LAYER + 1)]))
    handle = llava_patch.apply(model, "vtc_cls", keep=20, layers=layers, ensemble=ensemble)
    _run(model, inputs)
    torch.testing.assert_close(torch.stack(handle.last_scores), reference, rtol=1e-5, atol=1e-7)
    assert torch.equal(torch.stack(handle.last_selection), _reference_selection(reference, 20))


def test_vtc_cls_default_is_three_layers_summed(tiny_llava, eager_cls_attention):
    model, processor = tiny_llava
    inputs = _inputs(processor, seeds=[8, 9])
    per_layer = eager_cls_attention(inputs)
    handle = llava_patch.apply(model, "vtc_cls", keep=10)
    _run(model, inputs)
    torch.testing.assert_close(torch.stack(handle.last_scores), per_layer[0] + per_layer[1] + per_layer[2], rtol=1e-5, atol=1e-7)


def test_random_depends_only_on_seed_and_image(tiny_llava):
    model, processor = tiny_llava

    def select(seeds, seed):
        with llava_patch.apply(model, "random", keep=10, seed=seed) as handle:
            _run(model, _inputs(processor, seeds))
            return handle.last_selection

    batch = select([0, 1, 2], seed=0)
    alone = select([1], seed=0)
    reordered = select([2, 1], seed=0)
    assert torch.equal(batch[1], alone[0]) and torch.equal(batch[1], reordered[1]) and torch.equal(batch[2], reordered[0])
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(select([1], seed=1)[0], alone[0])
    assert all(torch.equal(s, s.sort().values) and s.unique().numel() == 10 for s in batch)


def test_grid_keeps_evenly_spaced_patches(tiny_llava):
    model, processor = tiny_llava
    for keep, expected in [(16, torch.arange(2, 64, 4)), (64, torch.arange(64)), (3, torch.tensor([10, 32, 53]))]:
        with llava_patch.apply(model, "grid", keep=keep) as handle:
            _run(model, _inputs(processor, [0, 1]))
        assert all(torch.equal(selection, expected) for selection in handle.last_selection)


def test_selection_never_uses_eager_attention(tiny_llava, monkeypatch):
    """The [CLS] row comes from the q/k projections: the tower runs its fused kernel throughout."""
    model, processor = tiny_llava

    def refuse(*args, **kwargs):
        raise AssertionError("eager attention was used")

    monkeypatch.setattr(modeling_clip, "eager_attention_forward", refuse)
    handle = llava_patch.apply(model, "vtc_cls", keep=8)
    _run(model, _inputs(processor, [3]))
    assert handle.last_selection[0].numel() == 8


def test_stop_at_select_layer_skips_only_unused_layers(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [4, 5])
    last_layer = model.model.vision_tower.encoder.layers[-1]
    calls = []
    last_layer.register_forward_hook(lambda *_: calls.append(1))
    logits = {}
    for stop in (True, False):
        calls.clear()
        with llava_patch.apply(model, "fastervlm", keep=9, stop_at_select_layer=stop):
            with torch.no_grad():
                logits[stop] = model(**inputs).logits
        assert len(calls) == (0 if stop else 1)
    assert torch.equal(logits[True], logits[False])
