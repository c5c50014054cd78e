"""FitPrune's recipe generation ("statistical analysis"), as the authors' code computes it, on our models.

Ye et al., "Fit and Prune" (arXiv 2409.10197); the algorithm of `LLaVA_1.5/llava/eval/statistical_analysis.py`
in ywh187/FitPrune (commit d28e418), re-implemented here (docs/fitprune.md lists every quirk of theirs and
what is done with it). Per calibration sample (one image, LLaVA's question JSONL), with A_l the head-wise
maximum of decoder layer l's attention probabilities (softmax in float32, cast to the model dtype, as
eager attention), s the first visual position, n the visual tokens and T the tokens after the image:

1. Unpruned statistics: W_cross[l] = Σ_{q ≥ s+n, k visual} A_l[q, k] / T  and
   W_self[l] = Σ_{q, k visual} A_l[q, k] / n.
2. For a trial α (bisection on [0, 1] until the bracket is ≤ `tolerance`, 0.01): simulate the decoder
   layer by layer over all samples. Before layer l, if FitPrune's FLOPs forecast (the FLOPs already
   spent, plus the rest of the model at the current token counts) averaged over samples meets
   (1 − R)·FLOPs(unpruned), stop: α reached the target. Otherwise run layer l on every sample's current
   tokens; per visual key k, cross_k = Σ_{q after the image} A_l[q, k] / T and
   self_k = Σ_{visual q} A_l[q, k] / n; by each score alone, the largest number of lowest-scoring keys
   whose removal keeps the remaining sum ≥ (1 − α)·W[l] (the authors' loop: the first i at which the
   sum without the i lowest falls below that, minus one); the keys in both sets are deleted after the
   layer's attention (their positions go with them). delete[l] = ⌊Σ_samples deleted / samples⌋.
   A reached α moves the bracket down, else up; the recipe is the last trial's (reached or not).

Geometry comes from each sample's prompt and the model (image start, visual-token count, layer count,
hidden and MLP widths), where the authors' code hard-codes LLaVA-1.5-7B's (35, 576, 32, 4096, 11008).
Attention probabilities are recomputed from each layer's q/k projections (hooks; RoPE applied, GQA
heads repeated), so the decoder keeps its sdpa/flash kernel; the sums are taken in float64.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from ..eval.provenance import device_name, git_commit, paper_model, sha256, versions, weights_fingerprint
from ..registry import find_adapter
from ..fitprune_recipe import Recipe, attention_flops, full_layer_flops, output_flops

ALGORITHM = ("ywh187/FitPrune@d28e418c920912b20dc888325651ecc6e214e6a1 "
             "LLaVA_1.5/llava/eval/statistical_analysis.py (re-implemented; see docs/fitprune.md)")
DEFAULT_TOLERANCE = 0.01  # statistical_analysis.py:336, `max_alpha - min_alpha > (0.01 + 1e-6)`


# --------------------------------------------------------------------------------------------------
# Calibration data
@dataclass
class CalibrationSample:
    """One calibration question: the language model's input embeddings and where the image sits."""

    question_id: Any
    embeds: torch.Tensor  # (1, L, D) the LLM's input embeddings (text embeddings + projected image)
    image_start: int  # s: position of the first visual token
    visual_tokens: int  # n: visual tokens of the image

    @property
    def length(self) -> int:
        return self.embeds.shape[1]


def read_questions(path: str | Path, limit: int | None = None) -> list[dict]:
    """LLaVA's question JSONL (`{"question_id", "image", "text"}` per line), the first `limit` lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such calibration file")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}: at least one calibration sample is needed")
    questions, seen = [], set()
    with open(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            missing = [key for key in ("question_id", "image", "text") if key not in record]
            if missing:
                raise ValueError(f"{path}:{number}: missing {', '.join(map(repr, missing))} (LLaVA's question "
                                 "format: question_id, image, text)")
            if record["question_id"] in seen:
                raise ValueError(f"{path}:{number}: question_id {record['question_id']!r} appears twice")
            seen.add(record["question_id"])
            questions.append(record)
            if limit is not None and len(questions) == limit:
                break
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


def language_model(model: nn.Module) -> nn.Module:
    """The Llama-style decoder of a LLaVA model (either backend), as the in-LLM methods patch it."""
    return find_adapter(model)(model).language_model()


class _Captured(Exception):
    pass


def capture_llm_inputs(vlm, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The input embeddings the model hands its language model for `inputs` (the LLM is not run)."""
    llm = language_model(vlm.model)
    captured = {}

    def stop(*args, **kwargs):
        captured["embeds"] = kwargs.get("inputs_embeds")
        raise _Captured

    llm.forward = stop
    try:
        with torch.inference_mode():
            vlm.forward(inputs)
    except _Captured:
        pass
    finally:
        del llm.forward
    if captured.get("embeds") is None:
        raise RuntimeError("the model did not call its language model with inputs_embeds")
    return captured["embeds"]


def prepare_samples(vlm, questions: Sequence[dict], image_folder: str | Path, progress: bool = True) -> list[CalibrationSample]:
    """Each question's LLM input embeddings with its image span, built with the evaluation prompt
    (`vlm.prepare`: vicuna_v1 with "<image>\\n" before the text, as FitPrune's `llava_v1` template)."""
    from PIL import Image

    image_folder = Path(image_folder)
    samples = []
    for question in tqdm(questions, desc="calibration inputs", disable=not progress):
        image_path = image_folder / question["image"]
        if not image_path.is_file():
            raise FileNotFoundError(f"{image_path}: image of question {question['question_id']!r} not found")
        image = Image.open(image_path).convert("RGB")
        inputs = vlm.prepare([image], [question["text"]])
        ids = inputs["input_ids"][0]
        placeholders = (ids == vlm.image_token_id).nonzero().squeeze(-1)
        if placeholders.numel() == 0:
            raise ValueError(f"question {question['question_id']!r}: the prompt holds no image placeholder")
        start = int(placeholders[0])
        if not torch.equal(placeholders, torch.arange(start, start + placeholders.numel(), device=ids.device)):
            raise ValueError(f"question {question['question_id']!r}: one contiguous image span is needed")
        embeds = capture_llm_inputs(vlm, inputs)
        visual = embeds.shape[1] - (ids.numel() - placeholders.numel())
        if visual < 1 or start + visual >= embeds.shape[1]:
            raise ValueError(f"question {question['question_id']!r}: {visual} visual tokens at {start} in a sequence "
                             f"of {embeds.shape[1]}: FitPrune needs text after the image")
        samples.append(CalibrationSample(question["question_id"], embeds.detach().clone(), start, visual))
    counts = {sample.visual_tokens for sample in samples}
    if len(counts) > 1:
        raise ValueError(f"the calibration images give different visual-token counts {sorted(counts)}; a FitPrune "
                         "recipe (absolute deletions per layer) needs one count (LLaVA-1.5)")
    return samples


# --------------------------------------------------------------------------------------------------
# Attention of one layer from its q/k projections
def head_max_attention(queries: torch.Tensor, keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                       attention: nn.Module, first_query: int) -> torch.Tensor:
    """(L − first_query, L) attention probabilities of query rows first_query… over all L keys, maximum
    over heads, for one causal sequence (batch of one).

    queries/keys: the layer's q_proj/k_proj outputs (1, L, ·) before RoPE; cos/sin: (1, L, head_dim).
    As eager attention: logits q·kᵀ·scaling, causal mask, softmax in float32 cast to the model dtype."""
    length, head_dim = queries.shape[1], attention.head_dim
    q = queries.view(1, length, -1, head_dim).transpose(1, 2)
    k = keys.view(1, length, -1, head_dim).transpose(1, 2)
    q = q * cos[:, None] + rotate_half(q) * sin[:, None]
    k = k * cos[:, None] + rotate_half(k) * sin[:, None]
    k = repeat_kv(k, attention.num_key_value_groups)
    q = q[:, :, first_query:]
    logits = torch.matmul(q, k.transpose(2, 3)) * attention.scaling
    rows = torch.arange(first_query, length, device=q.device)[:, None]
    future = torch.arange(length, device=q.device)[None, :] > rows
    logits = logits.masked_fill(future, torch.finfo(logits.dtype).min)
    probabilities = torch.softmax(logits, dim=-1, dtype=torch.float32).to(q.dtype)
    return probabilities.amax(dim=1)[0]


@dataclass
class _SampleState:
    """A sample inside the layer-by-layer simulation: its current hidden states and positions."""

    sample: CalibrationSample
    hidden: torch.Tensor
    positions: torch.Tensor
    visual: int

    @classmethod
    def start(cls, sample: CalibrationSample, device) -> "_SampleState":
        hidden = sample.embeds.to(device)
        return cls(sample, hidden, torch.arange(hidden.shape[1], device=device)[None], sample.visual_tokens)


def _run_layer(llm: nn.Module, index: int, state: _SampleState) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer `index` on the sample's current tokens: (its output (1, L, D), head-max attention rows
    image start… over all keys)."""
    layer, hidden = llm.layers[index], state.hidden
    captured: dict[str, torch.Tensor] = {}
    attention = layer.self_attn
    hooks = [attention.q_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("q", o)),
             attention.k_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("k", o))]
    try:
        cos, sin = llm.rotary_emb(hidden, position_ids=state.positions)
        ones = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        mask = create_causal_mask(llm.config, hidden, ones, None, None)
        output = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=state.positions,
                       past_key_values=None, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    output = output[0] if isinstance(output, tuple) else output
    attention_rows = head_max_attention(captured["q"], captured["k"], cos, sin, attention, state.sample.image_start)
    return output, attention_rows


def _visual_scores(rows: torch.Tensor, start: int, visual: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per visual key (float64): cross = Σ over the queries after the image / their count;
    self = Σ over the visual queries of A/n (statistical_analysis.py:208-210)."""
    length = rows.shape[1]
    block = rows[:, start : start + visual].double()
    cross = block[visual:].sum(dim=0) / (length - start - visual)
    self_ = (block[:visual] / visual).sum(dim=0)
    return cross, self_


# --------------------------------------------------------------------------------------------------
# Step 1: unpruned weight sums
@dataclass
class WeightSums:
    """Per sample (calibration order), per layer: W_cross and W_self of the unpruned model."""

    cross: list[list[float]]
    self: list[list[float]]


@torch.inference_mode()
def collect_weight_sums(llm: nn.Module, samples: Sequence[CalibrationSample], progress: bool = True) -> WeightSums:
    """Step 1 (statistical_analysis.py:283-318): each sample through the unpruned decoder."""
    device = next(llm.parameters()).device
    cross, self_ = [], []
    for sample in tqdm(samples, desc="FitPrune step 1: attention statistics", disable=not progress):
        state, sample_cross, sample_self = _SampleState.start(sample, device), [], []
        for index in range(len(llm.layers)):
            output, rows = _run_layer(llm, index, state)
            c, s = _visual_scores(rows, sample.image_start, sample.visual_tokens)
            sample_cross.append(float(c.sum()))
            sample_self.append(float(s.sum()))
            state.hidden = output
        cross.append(sample_cross)
        self_.append(sample_self)
    return WeightSums(cross, self_)


# --------------------------------------------------------------------------------------------------
# Step 2: one trial α
def deletion_candidates(scores: torch.Tensor, weight_sum: float, alpha: float) -> tuple[torch.Tensor, int | None]:
    """Keys in ascending score order and how many of the lowest to delete (statistical_analysis.py:225-235):
    the first i in [0, n) at which `scores.sum() − (sum of the i lowest)` < W − W·α, minus one (≥ 0).
    None where no i qualifies (the authors' loop then keeps the previous evaluation's count)."""
    order = torch.argsort(scores, stable=True)
    total = scores.sum()
    prefix = torch.cat([scores.new_zeros(1), torch.cumsum(scores[order], dim=0)])[: scores.numel()]  # the i lowest
    below = ((total - prefix) < (weight_sum - weight_sum * alpha)).nonzero()
    if below.numel() == 0:
        return order, None
    return order, max(int(below[0]) - 1, 0)


@dataclass
class TrialResult:
    alpha: float
    reached: bool  # the FLOPs forecast met the target before the last layer
    stopped_at_layer: int | None  # the layer before which it did
    delete: list[int]  # ⌊mean deletions⌋ per layer
    forecast_reduction: float | None  # 1 − forecast/unpruned where the target was met
    stale_counts: int = 0  # evaluations where the authors' loop reuses the previous count
    per_sample_deleted: list[list[int]] = field(default_factory=list)


def flops_budget(visual_tokens: int, layers: int, hidden: int, intermediate: int) -> int:
    """FLOPs of one unpruned image (statistical_analysis.py:279-280, from the model's sizes)."""
    return full_layer_flops(visual_tokens, hidden, intermediate) * layers


@torch.inference_mode()
def fit_trial(llm: nn.Module, samples: Sequence[CalibrationSample], sums: WeightSums, alpha: float,
              reduction_ratio: float, progress: bool = False) -> TrialResult:
    """One `fit_model` call (statistical_analysis.py:124-275): the layer-by-layer simulation at `alpha`."""
    device = next(llm.parameters()).device
    config = llm.config
    layers, hidden, intermediate = len(llm.layers), config.hidden_size, config.intermediate_size
    states = [_SampleState.start(sample, device) for sample in samples]
    origin = flops_budget(samples[0].visual_tokens, layers, hidden, intermediate)
    already = 0
    totals = [0] * layers
    per_sample = [[0] * layers for _ in samples]
    previous = {"cross": None, "self": None}  # the authors' del_num_cross/del_num_self carry over
    stale = 0
    result = TrialResult(alpha, False, None, [], None)
    for index in tqdm(range(layers), desc=f"alpha={alpha:.4f}", leave=False, disable=not progress):
        forecast = 0
        for state in states:
            already += attention_flops(state.visual, hidden)
            forecast += output_flops(state.visual, hidden, intermediate) + \
                full_layer_flops(state.visual, hidden, intermediate) * (layers - 1 - index)
        if (already + forecast) / len(states) <= origin * (1 - reduction_ratio):
            result.reached, result.stopped_at_layer = True, index
            result.forecast_reduction = 1 - (already + forecast) / len(states) / origin
            break
        for number, state in enumerate(states):
            sample = state.sample
            output, rows = _run_layer(llm, index, state)
            cross, self_ = _visual_scores(rows, sample.image_start, state.visual)
            deleted = []
            for name, scores, weight_sum in (("cross", cross, sums.cross[number][index]),
                                             ("self", self_, sums.self[number][index])):
                order, count = deletion_candidates(scores, weight_sum, alpha)
                if count is None:
                    stale += 1
                    count = previous[name] if previous[name] is not None else 0
                previous[name] = count
                deleted.append(set(order[:count].tolist()))
            both = sorted(deleted[0] & deleted[1])
            totals[index] += len(both)
            per_sample[number][index] = len(both)
            if both:
                keep = torch.ones(output.shape[1], dtype=torch.bool, device=output.device)
                keep[torch.tensor(both, device=output.device) + sample.image_start] = False
                output, state.positions = output[:, keep], state.positions[:, keep]
                state.visual -= len(both)
            state.hidden = output
            already += output_flops(state.visual, hidden, intermediate)
    result.delete = [total // len(states) for total in totals]
    result.stale_counts, result.per_sample_deleted = stale, per_sample
    return result


@dataclass
class FitResult:
    delete: list[int]
    alpha: float
    reached: bool
    tolerance: float
    trials: list[TrialResult]
    sums: WeightSums


def fit_recipe(llm: nn.Module, samples: Sequence[CalibrationSample], reduction_ratio: float,
               tolerance: float = DEFAULT_TOLERANCE, progress: bool = True, sums: WeightSums | None = None) -> FitResult:
    """Steps 1 and 2 (statistical_analysis.py:320-344): bisection on α over [0, 1]; the last trial's scheme."""
    if not 0.0 <= reduction_ratio < 1.0:
        raise ValueError(f"reduction_ratio must be a FLOPs-reduction fraction in [0, 1), got {reduction_ratio!r}")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if not samples:
        raise ValueError("no calibration samples")
    sums = sums or collect_weight_sums(llm, samples, progress)
    low, high, trials = 0.0, 1.0, []
    steps = math.ceil(math.log2(1 / tolerance))
    with tqdm(total=steps, desc="FitPrune step 2: bisection on alpha", disable=not progress) as bar:
        while high - low > tolerance + 1e-6:
            middle = (low + high) / 2
            trial = fit_trial(llm, samples, sums, middle, reduction_ratio, progress)
            trials.append(trial)
            if trial.reached:
                high = middle
            else:
                low = middle
            bar.update(1)
            bar.set_postfix(alpha=f"{middle:.4f}", reached=trial.reached)
    last = trials[-1]
    return FitResult(last.delete, last.alpha, last.reached, tolerance, trials, sums)


# --------------------------------------------------------------------------------------------------
# The command
def generate_recipe(model: str, data: str | Path, image_folder: str | Path, reduction_ratio: float,
                    output: str | Path, backend: str = "hf", limit: int | None = None, device: str | None = None,
                    tolerance: float = DEFAULT_TOLERANCE, progress: bool = True, command: str | None = None) -> Recipe:
    """Fit a recipe on a checkpoint and calibration questions; write it (with the data it used) to
    `output`, a new file."""
    from ..models.loading import load_model

    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output}: already exists; the recipe is not overwritten (choose a new --output)")
    if not 0.0 <= reduction_ratio < 1.0:
        raise ValueError(f"--reduction-ratio must be a FLOPs-reduction fraction in [0, 1), got {reduction_ratio!r}")
    questions = read_questions(data, limit)
    vlm = load_model(model, backend=backend, device=device)
    llm = language_model(vlm.model)
    samples = prepare_samples(vlm, questions, image_folder, progress)
    fit = fit_recipe(llm, samples, reduction_ratio, tolerance, progress)
    config = llm.config
    starts = sorted({sample.image_start for sample in samples})
    recipe = Recipe(
        delete=fit.delete, flops_reduction_target=reduction_ratio, visual_tokens=samples[0].visual_tokens,
        model={"name": paper_model(model), "source": str(model), "backend": backend, "layers": len(llm.layers),
               "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
               "visual_tokens": samples[0].visual_tokens, "fingerprint": weights_fingerprint(model),
               "dtype": str(next(llm.parameters()).dtype).replace("torch.", "")},
        calibration={"file": str(data), "sha256": sha256(data),
                     "samples": len(samples), "question_ids": [sample.question_id for sample in samples],
                     "image_folder": str(image_folder), "limit": limit, "image_start": starts,
                     "prompt": "vicuna_v1 (= LLaVA's llava_v1), '<image>\\n' before the text"},
        fitting={"alpha": fit.alpha, "reached": fit.reached, "tolerance": tolerance, "algorithm": ALGORITHM,
                 "trials": [{"alpha": t.alpha, "reached": t.reached, "stopped_at_layer": t.stopped_at_layer,
                             "forecast_reduction": t.forecast_reduction, "stale_counts": t.stale_counts,
                             "delete": t.delete} for t in fit.trials],
                 "weight_sums_mean": {"cross": _layer_means(fit.sums.cross), "self": _layer_means(fit.sums.self)}},
        versions={**versions(), "llava_patch_commit": git_commit()},
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=device_name() if str(next(llm.parameters()).device).startswith("cuda") else "cpu",
        command=command or _command(model, backend, data, image_folder, reduction_ratio, output, limit, device, tolerance),
    )
    recipe.save(output)
    return recipe


def _command(model, backend, data, image_folder, reduction_ratio, output, limit, device, tolerance) -> str:
    """The `llava-patch fitprune-recipe` command line that fits this recipe."""
    words = ["llava-patch", "fitprune-recipe", "--model", str(model), "--backend", backend, "--data", str(data),
             "--image-folder", str(image_folder), "--reduction-ratio", f"{reduction_ratio:g}", "--output", str(output)]
    for option, value in (("--limit", limit), ("--device", device)):
        if value is not None:
            words += [option, str(value)]
    if tolerance != DEFAULT_TOLERANCE:
        words += ["--tolerance", f"{tolerance:g}"]
    return shlex.join(words)


def _layer_means(values: list[list[float]]) -> list[float]:
    return [sum(column) / len(column) for column in zip(*values)]
