"""FitPrune's recipe generation against the authors' arithmetic, re-implemented here from reading
`LLaVA_1.5/llava/eval/statistical_analysis.py` (ywh187/FitPrune d28e418): step 1 from an eager model's
`output_attentions`, step 2 as their loop — each layer run piece by piece (norm, q/k/v, RoPE, explicit
softmax, deletion of attention-output and residual rows, o_proj, MLP), the per-key loops over
`range(len(sorted))` with prefix `.sum()`s, the counts that carry over when a loop does not break, the
intersection by `unique(return_counts=True)`, their FLOPs bookkeeping and their bisection. Geometry
(image start, visual tokens, layers, widths) is the sample's and the model's where they hard-code
LLaVA-1.5-7B's; sums are in float64 as in the library (theirs are fp16 on CUDA)."""

import json
import shlex
import math

import pytest
import torch
from PIL import Image
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from llava_patch.calibration import load_recipe
from llava_patch.calibration.fitprune import (
    collect_weight_sums, deletion_candidates, fit_recipe, generate_recipe, language_model, prepare_samples,
    read_questions,
)
from llava_patch.cli import main
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import load, random_image

QUESTIONS = ["what is in the image ?", "w1 w2 w3 w4 w5 describe the image", "colour ?", "is the image w7 w8 ?"]


def _calibration(directory, count=5):
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    path = directory / "questions.jsonl"
    with open(path, "w") as file:
        for index in range(count):
            random_image(20 + index, size=(48 + 7 * index, 72)).save(images / f"{index}.png")
            file.write(json.dumps({"question_id": f"q{index}", "image": f"{index}.png",
                                   "text": QUESTIONS[index % len(QUESTIONS)]}) + "\n")
    return path, images


# --- the authors' arithmetic -------------------------------------------------------------------------
def _reference_inputs(eager, vlm, question, image):
    """prepare_inputs_labels_for_multimodal's result for the transformers model: token embeddings with
    the projected image features in the placeholders; (embeds, image start, visual tokens)."""
    inputs = vlm.prepare([image], [question])
    ids = inputs["input_ids"]
    positions = (ids[0] == eager.config.image_token_id).nonzero().squeeze(-1)
    features = torch.cat(list(eager.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output))
    embeds = eager.model.get_input_embeddings()(ids).clone()
    embeds[0, positions] = features
    return inputs, embeds, int(positions[0]), positions.numel()


def _reference_step1(eager, inputs, start, visual):
    """compute_attention_weights (statistical_analysis.py:283-318) for one sample."""
    attentions = eager(**inputs, output_attentions=True).attentions
    length = inputs["input_ids"].shape[1]
    cross, self_ = [], []
    for layer in range(len(attentions)):
        weights = attentions[layer].max(dim=1).values.squeeze().double()
        cross.append(weights[start + visual:, start:start + visual].sum().item() / (length - start - visual))
        self_.append(weights[start:start + visual, start:start + visual].sum().item() / max(visual, 1))
    return cross, self_


def _causal_mask(length, dtype):
    mask = torch.full((length, length), torch.finfo(dtype).min)
    mask.masked_fill_(torch.arange(length) < (torch.arange(length) + 1).view(length, 1), 0)
    return mask[None, None]


def _reference_fit(llm, embeds, starts, visuals, cross_sums, self_sums, alpha, ratio):
    """fit_model (statistical_analysis.py:124-275)."""
    config = llm.config
    hidden, inter, layers = config.hidden_size, config.intermediate_size, len(llm.layers)
    count = visuals[0]

    def rest_flops(tk, layer_idx):
        res = tk * hidden ** 2 + 3 * inter * hidden * tk
        left_layer = layers - 1 - layer_idx
        res += ((tk * hidden * hidden * 3 + tk * tk * hidden + tk * hidden * tk + tk * hidden * hidden)
                + (hidden * inter * tk * 3)) * left_layer
        return res

    origin = ((count * hidden * hidden * 3 + count * count * hidden + count * hidden * count + count * hidden * hidden)
              + (hidden * inter * count * 3)) * layers
    samples = range(len(embeds))
    already = 0
    left = {s: visuals[s] for s in samples}
    residual_batch, position_batch = {}, {}
    scheme = {i: 0 for i in range(layers)}
    reached = False
    del_num_cross = del_num_self = None
    for layer_idx, layer in enumerate(llm.layers):
        forecast = 0
        for vtk in left.values():
            already += vtk * hidden ** 2 * 3 + vtk ** 2 * hidden * 2
            forecast += rest_flops(vtk, layer_idx)
        if (already + forecast) / len(left) <= origin * (1 - ratio):
            reached = True
            break
        for s in samples:
            sys_len = starts[s]
            inputs_embeds = embeds[s] if layer_idx == 0 else residual_batch[s]
            position_ids = position_batch.get(s, torch.arange(inputs_embeds.shape[1])[None])
            bsz, q_len, _ = inputs_embeds.shape
            residual_batch[s] = inputs_embeds
            states = layer.input_layernorm(inputs_embeds)
            attn = layer.self_attn
            head_dim = attn.head_dim
            q = attn.q_proj(states).view(bsz, q_len, -1, head_dim).transpose(1, 2)
            k = attn.k_proj(states).view(bsz, q_len, -1, head_dim).transpose(1, 2)
            v = attn.v_proj(states).view(bsz, q_len, -1, head_dim).transpose(1, 2)
            cos, sin = llm.rotary_emb(v, position_ids)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
            weights = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(head_dim) + _causal_mask(q_len, q.dtype)
            weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
            attn_output = torch.matmul(weights, v)
            headmax = weights.max(dim=1).values.squeeze().double()
            n = left[s]
            focus = headmax[sys_len + n:, sys_len:sys_len + n].sum(dim=0) / (weights.shape[3] - sys_len - n)
            img_part = (headmax[sys_len:sys_len + n, sys_len:sys_len + n] / n).sum(dim=0)
            threshold_cross = cross_sums[s][layer_idx] * alpha
            threshold_self = self_sums[s][layer_idx] * alpha
            sorted_cross = torch.argsort(focus, stable=True)
            sorted_self = torch.argsort(img_part, stable=True)
            cross_sum, self_sum = focus.sum(), img_part.sum()
            for i in range(len(sorted_cross)):
                if (cross_sum - focus[sorted_cross[:i]].sum()) < (cross_sums[s][layer_idx] - threshold_cross):
                    del_num_cross = max(i - 1, 0)
                    break
            for i in range(len(sorted_self)):
                if (self_sum - img_part[sorted_self[:i]].sum()) < (self_sums[s][layer_idx] - threshold_self):
                    del_num_self = max(i - 1, 0)
                    break
            combined = torch.concat([sorted_cross[:del_num_cross or 0], sorted_self[:del_num_self or 0]])
            values, counts = combined.unique(return_counts=True, sorted=False)
            both = values[counts > 1]
            scheme[layer_idx] += both.shape[0]
            if both.shape[0] > 0:
                mask = torch.ones(attn_output.shape[2], dtype=torch.bool)
                mask[both + sys_len] = False
                attn_output = attn_output[:, :, mask, :]
                residual_batch[s] = residual_batch[s][:, mask, :]
                left[s] -= int((~mask).sum())
                position_batch[s] = position_ids[:, mask]
            attn_output = attn_output.transpose(1, 2).reshape(bsz, attn_output.shape[2], -1)
            states = residual_batch[s] + attn.o_proj(attn_output)
            states = states + layer.mlp(layer.post_attention_layernorm(states))
            residual_batch[s] = states
            already += left[s] * hidden ** 2 + 3 * inter * hidden * left[s]
    return reached, [scheme[i] // len(embeds) for i in range(layers)]


def _reference_recipe(eager, vlm, questions, images, ratio, tolerance=0.01):
    embeds, starts, visuals, cross_sums, self_sums = [], [], [], [], []
    for question in questions:
        image = Image.open(images / question["image"]).convert("RGB")
        inputs, embed, start, visual = _reference_inputs(eager, vlm, question["text"], image)
        cross, self_ = _reference_step1(eager, inputs, start, visual)
        embeds.append(embed)
        starts.append(start)
        visuals.append(visual)
        cross_sums.append(cross)
        self_sums.append(self_)
    llm = eager.model.language_model
    low, high, trials = 0.0, 1.0, []
    while high - low > tolerance + 1e-6:
        mid = (low + high) / 2
        reached, scheme = _reference_fit(llm, embeds, starts, visuals, cross_sums, self_sums, mid, ratio)
        trials.append((mid, reached, scheme))
        high, low = (mid, low) if reached else (high, mid)
    return trials, cross_sums, self_sums


# --- tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.3, 0.6, 0.8])  # 0.8: out of reach of 4 layers, α → 0.99, stale counts
def test_schemes_equal_the_authors_arithmetic(tiny_llava_576_dir, tmp_path, ratio):
    data, images = _calibration(tmp_path, count=4)
    questions = read_questions(data)
    vlm = load_model(tiny_llava_576_dir, backend="hf", device="cpu")
    eager, _ = load(tiny_llava_576_dir, attn_implementation="eager")
    with torch.no_grad():
        expected, cross, self_ = _reference_recipe(eager, vlm, questions, images, ratio)
    llm = language_model(vlm.model)
    samples = prepare_samples(vlm, questions, images, progress=False)
    assert [s.visual_tokens for s in samples] == [576] * 4
    sums = collect_weight_sums(llm, samples, progress=False)
    torch.testing.assert_close(torch.tensor(sums.cross, dtype=torch.float64), torch.tensor(cross, dtype=torch.float64), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(sums.self, dtype=torch.float64), torch.tensor(self_, dtype=torch.float64), rtol=1e-5, atol=0)
    fit = fit_recipe(llm, samples, ratio, progress=False, sums=sums)
    assert [(t.alpha, t.reached, t.delete) for t in fit.trials] == expected
    assert fit.delete == expected[-1][2] and fit.alpha == expected[-1][0]
    assert len(fit.trials) == 7  # 1 → 0.0078: seven halvings to reach the 0.01 bracket
    assert any(any(t.delete) for t in fit.trials)  # the comparison covers real deletions
    if ratio == 0.8:  # loops that never break reuse the previous count (and 0 where there is none)
        assert not fit.reached and any(t.stale_counts and any(t.delete) for t in fit.trials)


def test_deletion_count_is_the_first_drop_below_the_threshold_minus_one():
    scores = torch.tensor([0.4, 0.1, 0.3, 0.2], dtype=torch.float64)  # total 1.0
    order, count = deletion_candidates(scores, 1.0, 0.35)  # remaining: 1.0, 0.9, 0.7, 0.4 → first < 0.65 at i=3
    assert order.tolist() == [1, 3, 2, 0] and count == 2
    assert deletion_candidates(scores, 1.0, 0.0)[1] == 0  # i=0: 1.0 < 1.0 is false, 0.9 < 1.0 → max(0, 0)
    assert deletion_candidates(scores, 2.0, 0.1)[1] == 0  # already below at i=0
    assert deletion_candidates(scores, 1.0, 0.99)[1] is None  # never below: the previous count is reused
    assert deletion_candidates(scores.new_zeros(0), 1.0, 0.5)[1] is None


def test_the_command_writes_the_recipe_with_its_calibration_data_and_never_overwrites(tiny_llava_dir, tmp_path, capsys):
    data, images = _calibration(tmp_path, count=3)
    output = tmp_path / "recipes" / "fitprune-50.json"
    argv = ["fitprune-recipe", "--model", str(tiny_llava_dir), "--backend", "hf", "--data", str(data),
            "--image-folder", str(images), "--reduction-ratio", "0.5", "--output", str(output), "--limit", "2",
            "--device", "cpu"]
    assert main(argv) == 0
    recipe = load_recipe(output)
    assert recipe.layers == 4 and recipe.flops_reduction_target == 0.5 and recipe.visual_tokens == 64
    calibration = recipe.calibration
    assert calibration["samples"] == 2 and calibration["question_ids"] == ["q0", "q1"] and calibration["limit"] == 2
    assert calibration["file"] == str(data) and len(calibration["sha256"]) == 64
    from llava_patch.models.checkpoint import sha256
    assert calibration["sha256"] == sha256(data)
    assert recipe.model["layers"] == 4 and recipe.model["hidden_size"] == 32 and recipe.model["intermediate_size"] == 64
    assert recipe.fitting["tolerance"] == 0.01 and recipe.fitting["alpha"] == recipe.fitting["trials"][-1]["alpha"]
    assert recipe.fitting["trials"][-1]["delete"] == recipe.delete
    assert recipe.versions["torch"] and recipe.date and recipe.device == "cpu"
    assert recipe.command == shlex.join(["llava-patch", *argv])
    written = json.loads(output.read_text())
    assert written["layer_mean_visual_tokens"] == recipe.layer_mean_visual_tokens()
    before = output.read_text()
    assert main(argv) == 2  # the CLI's user error: one line naming the file
    assert str(output) in capsys.readouterr().err and output.read_text() == before
    with pytest.raises(FileExistsError, match="already exists"):
        generate_recipe(str(tiny_llava_dir), data, images, 0.5, output, device="cpu", progress=False)


def test_both_backends_fit_the_same_recipe(tiny_original, tmp_path):
    pytest.importorskip("llava")
    original, converted = tiny_original
    data, images = _calibration(tmp_path, count=3)
    recipes = [generate_recipe(str(path), data, images, 0.5, tmp_path / f"{backend}.json", backend=backend,
                               device="cpu", progress=False)
               for backend, path in (("llava", original), ("hf", converted))]
    assert recipes[0].delete == recipes[1].delete
    assert recipes[0].calibration["image_start"] == recipes[1].calibration["image_start"]


def test_calibration_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "image": "a.png", "text": "x"}\n{"question_id": 2, "image": "b.png"}\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:2: missing 'text'"):
        read_questions(path)
    path.write_text('{"question_id": 1, "image": "a.png", "text": "x"}\n' * 2)
    with pytest.raises(ValueError, match=r"q\.jsonl:2: question_id 1 appears twice"):
        read_questions(path)
    assert len(read_questions(path, limit=1)) == 1
    with pytest.raises(FileNotFoundError, match="no such calibration file"):
        read_questions(tmp_path / "missing.jsonl")
