"""PruMerge+ against a direct, loop-by-loop computation of VTC-CLS's reference procedure."""

import pytest
import torch
import torch.nn.functional as F

import llava_patch
from llava_patch.models.tiny import load, prompt, random_image

SETTINGS = {64: (13, 11), 128: (40, 6), 256: (95, 3)}


def _inputs(processor, seeds):
    images = [random_image(seed, size=(200 + 30 * seed, 400 - 20 * seed)) for seed in seeds]
    return processor(images=images, text=[prompt("what is in the image ?")] * len(seeds), return_tensors="pt", padding=True)


def _direct(model, pixel_values, keep):
    """The reference, written out: last-layer q/k without heads, top-n then the grid minus them,
    each kept token + Σ attention·feature over its 32 most key-similar others, one extra token."""
    tower = model.model.vision_tower
    with torch.no_grad():
        hidden = tower(pixel_values, output_hidden_states=True).hidden_states
        features = hidden[-2][:, 1:]  # select layer −2, [CLS] dropped
        last = tower.encoder.layers[-1]
        normed = last.layer_norm1(hidden[-2])  # the last layer's input is the select layer's output
        q, k = last.self_attn.q_proj(normed), last.self_attn.k_proj(normed)
    top, step = SETTINGS[keep]
    results = []
    for b in range(pixel_values.shape[0]):
        attention = torch.softmax((q[b, :1] @ k[b].T) * k.shape[-1] ** -0.5, dim=-1)[0, 1:]
        best = attention.topk(top).indices.tolist()
        chosen = best + [i for i in range(0, 575, step) if i not in best]
        dropped = [i for i in range(576) if i not in chosen]
        keys = F.normalize(k[b, 1:], dim=-1)
        merged = []
        for i in chosen:
            others = [j for j in range(576) if j != i]
            similarity = torch.stack([keys[i] @ keys[j] for j in others])
            neighbours = [others[j] for j in similarity.topk(32).indices.tolist()]
            merged.append(features[b, i] + sum(attention[j] * features[b, j] for j in neighbours))
        merged.append(sum(attention[j] * features[b, j] for j in dropped))
        results.append((chosen, torch.stack(merged)))
    return results


@pytest.mark.parametrize("keep", [64, 128, 256])
def test_kept_tokens_and_merged_features_equal_a_direct_computation(tiny_llava_576_dir, keep):
    model, processor = load(tiny_llava_576_dir)
    inputs = _inputs(processor, [0, 1])
    seen = []
    model.model.multi_modal_projector.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    handle = llava_patch.apply(model, "prumerge_plus", keep=keep)
    with torch.no_grad():
        model(**inputs)
    expected = _direct(model, inputs["pixel_values"], keep)
    counts = [len(chosen) + 1 for chosen, _ in expected]
    assert handle.last_visual_tokens == counts  # |top-n ∪ grid| + 1 extra, per image
    merged = seen[0].split(counts)
    for (chosen, features), kept, ours in zip(expected, handle.last_selection, merged):
        assert kept.tolist() == chosen  # top-n in attention order, then the grid
        torch.testing.assert_close(ours, features, rtol=1e-4, atol=1e-5)


def test_only_the_published_budgets_and_single_crop_models(tiny_llava_576_dir, tiny_next_dir):
    model, _ = load(tiny_llava_576_dir)
    with pytest.raises(ValueError, match="keep=100; the method is defined for keep = 64, 128, 256 only"):
        llava_patch.apply(model, "prumerge_plus", keep=100)
    from transformers import LlavaNextForConditionalGeneration

    next_model = LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir)
    with pytest.raises(ValueError, match="defined for single-crop LLaVA-1.5 models"):
        llava_patch.apply(next_model, "prumerge_plus", keep=64)


def test_the_original_backend_merges_the_same_tokens(tiny_original):
    from llava_patch.models.loading import load_model

    vlms = [load_model(path, backend=backend, device="cpu") for path, backend in zip(tiny_original, ("llava", "hf"))]
    handles = [llava_patch.apply(vlm.model, "prumerge_plus", keep=64) for vlm in vlms]
    images, questions = [random_image(3), random_image(4, (40, 90))], ["What is shown?", "Is there a dog?"]
    answers = [vlm.generate(images, questions, max_new_tokens=6) for vlm in vlms]
    assert answers[0] == answers[1]
    assert handles[0].last_visual_tokens == handles[1].last_visual_tokens
    for a, b in zip(handles[0].last_selection, handles[1].last_selection):
        assert torch.equal(a, b)
