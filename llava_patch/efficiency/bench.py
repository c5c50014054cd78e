"""Latency and memory of pruned LLaVA models, measured — and the reference approach beside them.

`llava-patch bench` (`run`) builds LLaVA architectures from configs with random weights (no
download): the real LLaVA-1.5-7B on a GPU in fp16, a scaled-down one with the real token geometry
(336 px, 576 patches) on CPU. For the unpruned model and FasterVLM, VTC-CLS and FastV at 75/90/95%
pruning and several batch sizes — and the LLM-stage SparseVLM and FitPrune at the same ratios (their
budgets set as `method_options` says) — it measures: the vision tower with selection (and the selection's
overhead over the plain tower call LLaVA makes), prefill, time to first token, decode tokens/s, peak
memory (GPU) and KV-cache bytes; and, on the full-size CLIP ViT-L/14-336 tower, what stopping at
LLaVA's select layer saves (`tower_truncation`). The **reference approach** runs as the original
repositories do: the tower in eager attention with `output_attentions=True` in every layer, batch
size 1. Every time is the median of repeated runs after warm-up (`measure`), synchronised with CUDA
events on a GPU. Results: JSON + Markdown + PNG. See docs/efficiency.md.

`llava-patch bench --toy` (`toy_speedups`) times a trained model instead: the toy LLaVA (or any
transformers LLaVA checkpoint) on real easy-VQA test images with their own questions, each pruning
method at 95% beside the unpruned model — prefill and generate latency, speedups, visual tokens.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from .. import apply, method_info, methods
from ..eval.easyvqa import training_questions
from ..methods.fastervlm import FasterVLM
from ..models.loading import load_model
from ..models.media import read_image
from ..fitprune_recipe import Recipe
from ..registry import create_method
from ..tower import encode_and_select
from .cost import TransformerSpec, estimate, spec_from_config

CONFIGS = {
    "llava-1.5-7b": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
                         text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)),
    "cpu-small": dict(vision=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8),
                      text=dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8)),
    "tiny": dict(vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4),
                 text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)),
}
# The pruning methods timed beside the unpruned model (the registry's methods that take no budget): the
# ones the papers' latency tables compare. The sanity baselines (random, grid) select as cheaply as
# FasterVLM and cost the same in the language model. SparseVLM and FitPrune need budgets fitted to the
# benched model (`method_options`).
PRUNING_METHODS = ("fastervlm", "vtc_cls", "fastv", "sparsevlm", "fitprune")
RATIOS = (0.75, 0.9, 0.95)
THROUGHPUT_METHOD, THROUGHPUT_RATIO = "fastervlm", 0.95
IMAGE_SIZE, PATCH_SIZE = 336, 14
PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 576 image placeholders per prompt
IMAGE_PLACEHOLDER_ID = 32000  # the image placeholder token id of the benchmark models' LlavaConfig (llava-hf's)
# CLIP ViT-L/14-336, LLaVA-1.5's tower, for `tower_truncation`.
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
SELECT_FROM_END = 2  # LLaVA feeds hidden_states[-2]: the output of the second-to-last encoder layer
TIMING = "median seconds; CUDA events + synchronize on GPU, wall clock on CPU"
TOY_RATIO = 0.95


def measured_methods() -> list[str]:
    """The unpruned method(s) of the registry, then `PRUNING_METHODS`."""
    unpruned = [name for name in methods() if not method_info(name).takes_budget]
    return unpruned + [method_info(name).name for name in PRUNING_METHODS]


def method_options(method: str, ratio: float, spec, directory: str | Path) -> dict:
    """The options `bench` applies `method` with at reduction ratio `ratio` on a model of `spec` (beside
    `reduction_ratio=ratio`), writing any file they need under `directory`:
    fitprune: `recipe`, a stand-in recipe for this model (`fitprune_bench_recipe`: reaches the FLOPs
        reduction `ratio` by FitPrune's own count; not fitted on data, not the authors');
    sparsevlm: `scale` 0 and the `bias` whose predicted layer mean, as SparseVLM counts it, is nearest
        round(N·(1 − ratio)) (`sparsevlm_bench_bias`; scale 0 makes the count independent of the
        attention's rank, which random weights make meaningless); the measured count is reported;
    the others: none."""
    if method == "fitprune":
        recipe = fitprune_bench_recipe(spec.llm, spec.visual_tokens, ratio, model_name=spec.name)
        path = recipe.save(Path(directory) / f"fitprune-{spec.name}-{ratio:g}.json")
        return {"recipe": str(path)}
    if method == "sparsevlm":
        return {"scale": 0.0, "bias": float(sparsevlm_bench_bias(spec.visual_tokens, spec.llm.layers, ratio))}
    return {}


def fitprune_bench_recipe(llm: TransformerSpec, visual_tokens: int, ratio: float, model_name: str = "custom") -> Recipe:
    """A FitPrune recipe for a `llm`-shaped decoder reaching a FLOPs reduction of `ratio` by FitPrune's
    own count (`Recipe.flops_reduction`), for the benchmark: geometric, front-loaded like the authors'
    published LLaVA-1.5-7B recipes at high ratios: after layer l (< L − 1) max(1, round(N·q^(l+1)))
    visual tokens are left, nothing is deleted after the last layer, and q is the largest (by bisection)
    whose recipe reaches `ratio`. Where no q does (shallow decoders: layer 0 alone runs over all N),
    it is the deepest (one token left after layer 0), with `fitting.reached` False. Its counts are not
    fitted on data (a random-weight model has no meaningful attention statistics) and it is not the
    authors' recipe."""
    layers = llm.layers

    def recipe(q: float) -> Recipe:
        left = [visual_tokens] + [max(1, round(visual_tokens * q ** (layer + 1))) for layer in range(layers - 1)]
        delete = [before - after for before, after in zip(left, left[1:])] + [0]
        return Recipe(delete=delete, flops_reduction_target=ratio, visual_tokens=visual_tokens,
                      model={"name": model_name, "layers": layers, "hidden_size": llm.hidden,
                             "intermediate_size": llm.intermediate, "visual_tokens": visual_tokens})

    low, high = 0.0, 1.0  # reduction(q) falls as q grows: find the largest q that still reaches the ratio
    for _ in range(60):
        middle = (low + high) / 2
        if recipe(middle).flops_reduction() >= ratio:
            low = middle
        else:
            high = middle
    chosen = recipe(low)
    chosen.fitting = {"algorithm": "llava_patch bench stand-in: geometric profile max(1, round(N·q^(l+1))) tokens "
                                   "left after layer l, q bisected to reach the target by FitPrune's FLOPs count; "
                                   "not fitted on data, not the authors' recipe",
                      "q": low, "reached": chosen.flops_reduction() >= ratio}
    return chosen


def sparsevlm_bench_bias(visual_tokens: int, layers: int, ratio: float) -> int:
    """The `bias` (with scale 0) whose predicted SparseVLM layer mean is nearest round(N·(1 − ratio)).
    With scale 0 a pruning layer keeps min(bias, V − 1) of its V visual tokens, as long as the raters'
    attention has rank below V (it has at most as many rows as raters), and inserts the merged clusters
    of the recycled 30 % (`sparsevlm_predicted_schedule`)."""
    target = round(visual_tokens * (1 - ratio))
    method = create_method("sparsevlm", {})
    return min(range(visual_tokens + 1), key=lambda bias: (abs(method.equivalent_visual_tokens(
        sparsevlm_predicted_schedule(visual_tokens, layers, bias)) - target), bias))


def sparsevlm_predicted_schedule(visual_tokens: int, layers: int, bias: int) -> list[int]:
    """Visual tokens each decoder layer processes under SparseVLM with scale 0 and `bias`, when every
    pruning layer prunes (rank below V): keeps min(bias, V − 1), then adds int((int(0.3·dropped) + 1)/10) + 1
    merged tokens."""
    from ..methods.sparsevlm import RECYCLED_FRACTION, TOKENS_PER_CLUSTER

    pruning = create_method("sparsevlm", {}).pruning_layers(layers)
    counts, left = [], visual_tokens
    for layer in range(layers):
        counts.append(left)
        if layer in pruning and left > 1:
            kept = max(0, min(bias, left - 1))
            recycled = min(int((left - kept) * RECYCLED_FRACTION) + 1, left - kept)
            left = kept + int(recycled / TOKENS_PER_CLUSTER) + 1
    return counts


def measured_settings(batch_sizes: list[int], ratios: tuple[float, ...] = RATIOS) -> list[tuple[int, str, float]]:
    """(batch, method, reduction ratio) of every measured language-model setting, in the order run."""
    return [(batch, method, ratio) for batch in batch_sizes for method in measured_methods()
            for ratio in (ratios if method_info(method).takes_budget else [0.0])]


def setting_name(batch: int, method: str, ratio: float) -> str:
    """A setting as the progress bar names it, e.g. "fastervlm 95% pruned, batch 8"."""
    return f"{method}{f' {ratio:.0%} pruned' if method_info(method).takes_budget else ''}, batch {batch}"


def progress_bar(batch_sizes: list[int], tower: bool = True) -> tqdm:
    """The bar `run` shows on stderr: one step per setting, plus the vision tower and throughput
    measurements (and the tower truncation when `tower`); its description names the current step."""
    return tqdm(total=len(measured_settings(batch_sizes)) + 2 + int(tower), desc="bench", unit="step", file=sys.stderr,
                dynamic_ncols=True)


def defaults(gpu: bool) -> dict:
    """`run`'s arguments but `output`, as `llava-patch bench` defaults them on a GPU or on the CPU."""
    return {"model": "llava-1.5-7b" if gpu else "cpu-small", "device": "cuda" if gpu else "cpu",
            "batch_sizes": [1, 8, 32] if gpu else [1, 8], "repeats": 5 if gpu else 3, "warmup": 2 if gpu else 1,
            "new_tokens": 8, "text_tokens": 60,  # POPE's prompts have about 60 text tokens
            "throughput_prompts": 8910 if gpu else 16}  # 8 910 = POPE's size


def run(model: str, device: str, batch_sizes: list[int], repeats: int, warmup: int, new_tokens: int,
        text_tokens: int, throughput_prompts: int, output: str | Path, tower_sizes: dict | None = None) -> list[Path]:
    """The whole benchmark (`run_benchmark`, and `tower_truncation` on the full-size tower or one of
    `tower_sizes`) written under `output`, a new directory (FileExistsError if it exists); returns the
    files written."""
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists; nothing is overwritten")
    if model not in CONFIGS:
        raise ValueError(f"unknown benchmark model {model!r}; known: {', '.join(CONFIGS)}")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    with progress_bar(batch_sizes) as progress:
        result = run_benchmark(model, device, dtype, batch_sizes, repeats, warmup, new_tokens, text_tokens,
                               throughput_prompts, progress=progress)
        progress.set_description("tower truncation (full-size tower)" if tower_sizes is None else "tower truncation")
        result["tower_truncation"] = tower_truncation(device, dtype, repeats=repeats, warmup=warmup, sizes=tower_sizes)
        progress.update()
    return write_results(result, output)


def toy_speedups(output: str | Path, model: str | Path | None = None, device: str = "cpu",
                 batch_sizes: tuple[int, ...] = (1, 8), repeats: int = 3, warmup: int = 1,
                 new_tokens: int = 8) -> list[Path]:
    """Latency of a trained LLaVA, unpruned and with each pruning method at `TOY_RATIO`: `model` is a
    transformers LLaVA checkpoint folder, by default the toy (`models.toy.toy_checkpoint`). The prompts
    are easy-VQA test images with their own questions (the first question of each of the first images;
    batch b takes the first b), prepared as the evaluation does (`VLM.prepare`), and each setting is
    measured as `run` measures it (`_measure_setting`). Written under `output`, a new directory, by
    `write_results`, with the system load average before and after; returns the files written."""
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists; nothing is overwritten")
    if model is None:
        from ..models.toy import toy_checkpoint

        model = toy_checkpoint()
    load_before = os.getloadavg()
    vlm = load_model(model, backend="hf", device=device)
    spec = spec_from_config(vlm.model.config, Path(model).name)
    asked = _first_questions(max(batch_sizes))
    rows, prompts = [], {}
    settings = measured_settings(list(batch_sizes), ratios=(TOY_RATIO,))
    with torch.inference_mode(), tqdm(settings, desc="toy bench", unit="setting", file=sys.stderr,
                                      dynamic_ncols=True) as progress:
        for batch, method, ratio in progress:
            progress.set_description(setting_name(batch, method, ratio))
            if batch not in prompts:
                prompts = {batch: vlm.prepare([read_image(str(path)) for path, _ in asked[:batch]],
                                              [question for _, question in asked[:batch]])}
            inputs = prompts[batch]
            text_tokens = inputs["input_ids"].shape[1] - vlm.tokens_per_image  # padded: what every row computes
            rows.append(_measure_setting(vlm.model, spec, method, ratio, batch, inputs, device, warmup, repeats,
                                         new_tokens, text_tokens))
    result = {
        "what": "prefill and generate latency of a trained LLaVA on easy-VQA, unpruned and with each pruning "
                f"method at {TOY_RATIO:.0%}", "model": str(model), "device": _device_name(device),
        "threads": torch.get_num_threads(), "dtype": str(vlm.model.dtype), "torch": torch.__version__,
        "repeats": repeats, "warmup": warmup, "new_tokens": new_tokens, "timing": TIMING,
        "workload": f"easy-VQA test images with their own questions, prompted and preprocessed as the evaluation "
                    f"does ({vlm.tokens_per_image} image tokens; batch b = the first b of the questions below, left "
                    "padded)",
        "questions": [{"image": path.name, "question": question} for path, question in asked],
        "load_average": {"before": [round(value, 2) for value in load_before],
                         "after": [round(value, 2) for value in os.getloadavg()], "cpus": os.cpu_count()},
        "settings": rows,
    }
    return write_results(result, output)


def _first_questions(images: int) -> list[tuple[Path, str]]:
    """(image, prompt text) of the first question of each of the first `images` easy-VQA test images."""
    first: dict[Path, str] = {}
    for path, question, _ in training_questions("test"):
        first.setdefault(path, question)
        if len(first) == images:
            break
    return list(first.items())


def build_model(name: str, dtype: torch.dtype, device: str) -> LlavaForConditionalGeneration:
    """A LLaVA-1.5-shaped model with random weights: CLIP-style tower at 336 px / 14 px patches."""
    sizes = CONFIGS[name]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=768,
                                       hidden_act="quick_gelu", **sizes["vision"]),
        text_config=LlamaConfig(vocab_size=32064, max_position_embeddings=4096, **sizes["text"]),
        image_token_id=IMAGE_PLACEHOLDER_ID, vision_feature_layer=-SELECT_FROM_END,
        vision_feature_select_strategy="default",
    )
    with torch.device(device):
        model = LlavaForConditionalGeneration(config)
    return model.to(dtype).eval()


def measure(function: Callable[[], object], device: str, warmup: int = 2, repeats: int = 5) -> list[float]:
    """Seconds of each of `repeats` calls after `warmup` unmeasured ones; CUDA events and a synchronise
    around each call on a GPU (the kernels are asynchronous), wall clock on CPU."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            function()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            begin = time.perf_counter()
            function()
            times.append(time.perf_counter() - begin)
    return times


def _inputs(batch: int, text_tokens: int, device: str, dtype: torch.dtype) -> dict:
    """A POPE-length prompt per row: text tokens around the 576 image placeholders, random pixels."""
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, 30000, (batch, text_tokens), generator=generator)
    ids = torch.cat([text[:, :5], torch.full((batch, PATCHES), IMAGE_PLACEHOLDER_ID), text[:, 5:]], dim=1)
    pixels = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device, dtype)}


def reference_vision(model, pixel_values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The original repositories' tower call: eager attention in every layer, all maps returned.
    Returns the select-layer features and the bytes of attention maps it materialised."""
    tower = model.model.vision_tower
    previous = tower.config._attn_implementation
    tower.set_attn_implementation("eager")
    try:
        output = tower(pixel_values, output_hidden_states=True, output_attentions=True)
    finally:
        tower.set_attn_implementation(previous)
    return output.hidden_states[-SELECT_FROM_END], sum(a.numel() * a.element_size() for a in output.attentions)


def _peak_memory(device: str, function: Callable[[], object]) -> int | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def _tower_calls(tower, pixel_values: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The plain transformers tower call LLaVA makes, and our encode + [CLS] row + FasterVLM top-29 over
    the full tower and stopping at the select layer."""
    select_layer = tower.config.num_hidden_layers - SELECT_FROM_END
    return {
        "plain": lambda: tower(pixel_values, output_hidden_states=True).hidden_states[-SELECT_FROM_END],
        "full": lambda: encode_and_select(tower, pixel_values, FasterVLM(), 29, select_layer, stop_at_select_layer=False),
        "stopped": lambda: encode_and_select(tower, pixel_values, FasterVLM(), 29, select_layer),
    }


def tower_truncation(device: str, dtype: torch.dtype, batch_size: int = 1, repeats: int = 7, warmup: int = 2,
                     sizes: dict | None = None) -> dict:
    """What stopping the vision tower at LLaVA's select layer saves, on the CLIP ViT-L/14-336
    architecture (random weights; `sizes` overrides its widths and depth). LLaVA-1.5 feeds
    hidden_states[-2] (the output of encoder layer 22 of 24) to the projector, so the original code
    computes layer 23 and throws it away. Median seconds per batch of the three `_tower_calls`."""
    torch.manual_seed(0)
    config = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=768, hidden_act="quick_gelu",
                              **(sizes or CLIP_L_336))
    with torch.device(device):
        tower = CLIPVisionModel(config)
    tower = tower.to(dtype).eval()
    pixels = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE).to(device, dtype)
    with torch.inference_mode():
        seconds = {name: statistics.median(measure(call, device, warmup, repeats))
                   for name, call in _tower_calls(tower, pixels).items()}
    return {
        "what": f"median seconds per batch; CLIP ViT/{PATCH_SIZE}-{IMAGE_SIZE} architecture "
                f"({config.num_hidden_layers} layers, width {config.hidden_size}), random weights, "
                f"{tower.config._attn_implementation}",
        "device": _device_name(device), "dtype": str(dtype), "batch_size": batch_size, "repeats": repeats,
        "warmup": warmup, "torch": torch.__version__,
        "seconds": {"transformers_tower_hidden_states": seconds["plain"], "select_full_tower": seconds["full"],
                    f"select_stop_at_layer_{config.num_hidden_layers - SELECT_FROM_END}": seconds["stopped"]},
        "saving_from_stopping": 1 - seconds["stopped"] / seconds["full"],
        "selection_overhead_vs_transformers_tower": seconds["full"] / seconds["plain"] - 1,
    }


def run_benchmark(name: str, device: str, dtype: torch.dtype, batch_sizes: list[int], repeats: int, warmup: int,
                  new_tokens: int, text_tokens: int, throughput_prompts: int, progress: tqdm | None = None) -> dict:
    """The measurements of `run` but the tower truncation; `progress` (a `progress_bar(batch_sizes, tower=False)`
    when None) names each step as it starts and counts it when done."""
    if progress is None:
        with progress_bar(batch_sizes, tower=False) as own:
            return run_benchmark(name, device, dtype, batch_sizes, repeats, warmup, new_tokens, text_tokens,
                                 throughput_prompts, progress=own)
    progress.set_description(f"building {name}")
    model = build_model(name, dtype, device)
    spec = spec_from_config(model.config, name)
    rows, tower = [], model.model.vision_tower
    progress.set_description("vision tower, batch 1")
    with torch.inference_mode():
        one = _inputs(1, text_tokens, device, dtype)
        calls = _tower_calls(tower, one["pixel_values"])
        plain, ours, stopped = (statistics.median(measure(calls[call], device, warmup, repeats))
                                for call in ("plain", "full", "stopped"))
        reference = statistics.median(measure(lambda: reference_vision(model, one["pixel_values"]), device, warmup, repeats))
        _, reference_bytes = reference_vision(model, one["pixel_values"])
        vision = {
            "transformers_tower_s": plain, "ours_full_tower_s": ours, "ours_stop_at_select_layer_s": stopped,
            "reference_eager_all_maps_s": reference,
            "selection_overhead_fraction": ours / plain - 1,
            "stop_at_select_layer_saving_fraction": 1 - stopped / ours,
            "reference_attention_map_bytes": reference_bytes,
            # the [CLS] row per scored layer: (images, heads, 1+P) float32 — what our selection adds
            "ours_extra_bytes_per_image": 4 * tower.config.num_attention_heads * (spec.patches + 1),
            "reference_peak_bytes": _peak_memory(device, lambda: reference_vision(model, one["pixel_values"])),
            "ours_peak_bytes": _peak_memory(device, calls["stopped"]),
        }
        progress.update()
        inputs = {}
        for batch, method, ratio in measured_settings(batch_sizes):
            progress.set_description(setting_name(batch, method, ratio))
            if batch not in inputs:
                inputs = {batch: _inputs(batch, text_tokens, device, dtype)}
            rows.append(_measure_setting(model, spec, method, ratio, batch, inputs[batch], device, warmup, repeats,
                                         new_tokens, text_tokens))
            progress.update()
        progress.set_description(f"throughput, {throughput_prompts} prompts")
        throughput = _throughput(model, spec, device, dtype, throughput_prompts, text_tokens, new_tokens, max(batch_sizes))
        progress.update()
    return {
        "what": __doc__.split("\n\n")[0], "model": name, "device": _device_name(device), "dtype": str(dtype),
        "torch": torch.__version__, "repeats": repeats, "warmup": warmup, "new_tokens": new_tokens,
        "text_tokens": text_tokens, "timing": TIMING,
        "workload": f"prompts of {text_tokens} random text tokens + {PATCHES} image tokens, random pixels",
        "vision": vision, "settings": rows, "throughput": throughput,
    }


def _measure_setting(model, spec, method, ratio, batch, inputs, device, warmup, repeats, new_tokens, text_tokens) -> dict:
    budget = {"reduction_ratio": ratio} if method_info(method).takes_budget else {}
    with tempfile.TemporaryDirectory() as directory:
        options = method_options(method, ratio, spec, directory) if budget else {}
        recipe = _recipe_summary(options["recipe"]) if "recipe" in options else None
        row = _measure_applied(model, spec, method, ratio, batch, inputs, device, warmup, repeats, new_tokens,
                               text_tokens, {**budget, **options})
    if recipe is not None:
        options = {**options, "recipe": recipe}
    return {**row, "options": options}


def _recipe_summary(path: str) -> dict:
    from ..fitprune_recipe import load_recipe

    recipe = load_recipe(path)
    return {"delete": recipe.delete, "flops_reduction_target": recipe.flops_reduction_target,
            "flops_reduction_fitprune_count": recipe.flops_reduction(), **recipe.fitting}


def _measure_applied(model, spec, method, ratio, batch, inputs, device, warmup, repeats, new_tokens, text_tokens,
                     arguments) -> dict:
    with apply(model, method, **arguments) as handle:
        prefill = statistics.median(measure(lambda: model(**inputs, use_cache=True), device, warmup, repeats))
        first = statistics.median(measure(lambda: model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, do_sample=False),
                                          device, warmup, repeats))
        whole = statistics.median(measure(lambda: model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                                 do_sample=False), device, warmup, repeats))
        peak = _peak_memory(device, lambda: model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                           do_sample=False))
        cache = model(**inputs, use_cache=True).past_key_values  # the last call: the handle describes this prefill
        kv_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
        visual = handle.last_visual_tokens
        layers = handle.last_layer_visual_tokens  # LLM-stage methods: per sample, each decoder layer's count
        equivalent = handle.last_equivalent_visual_tokens
    schedule = layers[0] if layers else None
    return {"method": method, "reduction_ratio": ratio, "batch": batch, "visual_tokens": visual[0],
            "layer_visual_tokens": schedule, "equivalent_visual_tokens": equivalent[0] if equivalent else None,
            "prefill_s": prefill, "ttft_s": first, "generate_s": whole, "decode_tokens_per_s": batch * (new_tokens - 1) / max(whole - first, 1e-9),
            "kv_cache_bytes": kv_bytes, "peak_bytes": peak,
            "model_prefill_macs": forward_macs(spec, method, ratio, text_tokens, visual[0], schedule)}


def forward_macs(spec, method: str, ratio: float, text_tokens: int, visual_tokens: int,
                 schedule: list[int] | None = None) -> int:
    """MACs of one forward over the prompt as `model(**inputs)` runs it: the (unpruned) tower, the projector,
    the LLM prefill, and the LM head over every position it returns logits for (text + kept visual). An
    LLM-stage method is costed on `schedule`, the visual tokens each decoder layer processed (measured:
    `handle.last_layer_visual_tokens` of the first row) when given, else on its own schedule for `ratio`."""
    if schedule is not None:
        budget = {"schedule": schedule}
    else:
        budget = {"reduction_ratio": ratio} if method_info(method).takes_budget else {}
    macs = estimate(spec, method, text_tokens=text_tokens, **budget)["macs"]
    lm_head = (text_tokens + visual_tokens) * spec.llm.hidden * spec.vocab
    return macs["vision_tower"] + macs["projector"] + macs["llm_prefill"] + lm_head


def _throughput(model, spec, device, dtype, prompts, text_tokens, new_tokens, batch) -> dict:
    """Questions per second over `prompts` POPE-length prompts: ours (FasterVLM 95%, batched) vs the
    reference approach (eager tower with all attention maps, batch 1, then the pruned LLM)."""
    def ours():
        with apply(model, THROUGHPUT_METHOD, reduction_ratio=THROUGHPUT_RATIO):
            for start in range(0, prompts, batch):
                model.generate(**_inputs(min(batch, prompts - start), text_tokens, device, dtype),
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    def reference():
        with apply(model, THROUGHPUT_METHOD, reduction_ratio=THROUGHPUT_RATIO):
            for _ in range(prompts):
                single = _inputs(1, text_tokens, device, dtype)
                reference_vision(model, single["pixel_values"])  # the reference's scoring pass
                model.generate(**single, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    seconds = {name: measure(function, device, warmup=0, repeats=1)[0] for name, function in (("ours", ours), ("reference", reference))}
    return {"prompts": prompts, "new_tokens": new_tokens, "batch": batch,
            "ours_questions_per_s": prompts / seconds["ours"], "reference_questions_per_s": prompts / seconds["reference"]}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def with_speedups(settings: list[dict]) -> list[dict]:
    """The settings rows, each a new dict with its prefill and generate speedups over the unpruned row of
    its batch size and the cost model's predicted prefill ratio (MACs of that forward unpruned / pruned)."""
    baseline = {row["batch"]: row for row in settings if not method_info(row["method"]).takes_budget}
    return [{**row, "prefill_speedup": baseline[row["batch"]]["prefill_s"] / row["prefill_s"],
             "generate_speedup": baseline[row["batch"]]["generate_s"] / row["generate_s"],
             "cost_model_ratio": baseline[row["batch"]]["model_prefill_macs"] / row["model_prefill_macs"]}
            for row in settings]


def write_results(result: dict, output: Path) -> list[Path]:
    """results.json, results.md (a table per batch size) and speedup.png under `output` (a new
    directory), all from the same rows (`with_speedups`); `result` itself is left as it is."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=False)
    saved = {**result, "settings": with_speedups(result["settings"])}
    (output / "results.json").write_text(json.dumps(saved, indent=2) + "\n")
    (output / "results.md").write_text(_markdown(saved))
    return [output / "results.json", output / "results.md", *_speedup_figure(saved, output / "speedup")]


def _markdown(result: dict) -> str:
    lines = [f"# Efficiency benchmark — {result['model']} on {result['device']} ({result['dtype']})", "",
             f"{result['timing']}; {result['repeats']} repeats after {result['warmup']} warm-up calls; "
             f"{result['workload']}; {result['new_tokens']} new tokens. "
             "prefill = one forward over the prompt (vision tower included; all-position logits); TTFT = generate() of "
             "one token; generate = generate() of all the new tokens (their number forced); cost-model ratio = MACs "
             "of the prefill forward unpruned / pruned. visual tokens: those reaching the last decoder layer (first "
             "row); layer mean: for LLM-stage methods the count their tables print (FastV, FitPrune: mean over layers "
             "of the visual tokens each processed; SparseVLM: mean of those left after each layer), measured; the "
             "cost model takes each LLM-stage row's measured per-layer counts. fitprune: a stand-in recipe reaching "
             "the ratio as a FLOPs reduction by FitPrune's count (not the authors'); sparsevlm: scale 0 and a bias "
             "aimed at the ratio's layer mean (see `options` in results.json)."]
    load = result.get("load_average")
    if load:
        lines += ["", f"System load average (1, 5, 15 min) on {load['cpus']} CPUs: {load['before']} before, "
                      f"{load['after']} after. Other processes shared the CPUs, so absolute times are inflated; the "
                      "settings of a batch size ran back to back under the same load."]
    vision = result.get("vision")
    if vision:
        lines += ["", "## Vision tower, batch 1", "", "| call | median s |", "|---|---|"]
        for key in ("transformers_tower_s", "ours_full_tower_s", "ours_stop_at_select_layer_s", "reference_eager_all_maps_s"):
            lines.append(f"| {key} | {vision[key]:.4f} |")
        lines += ["", f"Selection overhead over the plain tower call: {vision['selection_overhead_fraction']:+.2%}. "
                  f"Stopping at the select layer saves {vision['stop_at_select_layer_saving_fraction']:.1%}. "
                  f"Extra memory of the selection: {vision['ours_extra_bytes_per_image']} bytes per image and scored "
                  f"layer (analytical); the reference materialises {vision['reference_attention_map_bytes'] / 2**20:.1f} "
                  "MiB of attention maps per image."]
    truncation = result.get("tower_truncation")
    if truncation:
        lines += ["", "## Stopping the full-size tower at the select layer", "",
                  f"{truncation['what']}; {truncation['device']}, {truncation['dtype']}, batch {truncation['batch_size']}, "
                  f"{truncation['repeats']} repeats after {truncation['warmup']} warm-up calls.", "",
                  "| call | median s |", "|---|---|"]
        lines += [f"| {name} | {seconds:.4f} |" for name, seconds in truncation["seconds"].items()]
        lines += ["", f"Saving from stopping: {truncation['saving_from_stopping']:.1%}; selection overhead over the "
                      f"plain tower call: {truncation['selection_overhead_vs_transformers_tower']:+.2%}."]
    lines += ["", "## Language model", "",
              "| method | pruned | batch | visual tokens | layer mean | prefill s | TTFT s | generate s | decode tok/s | "
              "KV MiB | prefill speedup | generate speedup | cost-model ratio | achieved/predicted |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["settings"]:
        speedup, predicted = row["prefill_speedup"], row["cost_model_ratio"]
        mean = row.get("equivalent_visual_tokens")
        lines.append(f"| {row['method']} | {row['reduction_ratio']:.0%} | {row['batch']} | {row['visual_tokens']} | "
                     f"{row['visual_tokens'] if mean is None else f'{mean:.1f}'} | "
                     f"{row['prefill_s']:.4f} | {row['ttft_s']:.4f} | {row['generate_s']:.4f} | "
                     f"{row['decode_tokens_per_s']:.1f} | {row['kv_cache_bytes'] / 2**20:.1f} | {speedup:.2f}× | "
                     f"{row['generate_speedup']:.2f}× | {predicted:.2f}× | {speedup / predicted:.0%} |")
    throughput = result.get("throughput")
    if throughput:
        lines += ["", f"Throughput over {throughput['prompts']} POPE-length prompts ({throughput['new_tokens']} new "
                      f"tokens): ours ({THROUGHPUT_METHOD} {THROUGHPUT_RATIO:.0%}, batch {throughput['batch']}) "
                      f"{throughput['ours_questions_per_s']:.2f} questions/s; reference approach (eager tower with all "
                      f"maps, batch 1) {throughput['reference_questions_per_s']:.2f} questions/s."]
    return "\n".join(lines) + "\n"


def _speedup_figure(result: dict, path: Path) -> list[Path]:
    """Prefill speedup per pruning method at the largest batch size, and the cost model's prediction for
    a vision-stage method."""
    from matplotlib.figure import Figure

    from ..plotting import save_figure

    batch = max(row["batch"] for row in result["settings"])
    rows = [row for row in result["settings"] if row["batch"] == batch and method_info(row["method"]).takes_budget]
    figure = Figure(figsize=(5, 3.5))
    axis = figure.subplots()
    for method in dict.fromkeys(row["method"] for row in rows):
        axis.plot(*zip(*[(100 * r["reduction_ratio"], r["prefill_speedup"]) for r in rows if r["method"] == method]),
                  marker="o", label=method)
    vision = next(method for method in dict.fromkeys(row["method"] for row in rows) if method_info(method).stage == "vision")
    predicted = [(100 * r["reduction_ratio"], r["cost_model_ratio"]) for r in rows if r["method"] == vision]
    axis.plot(*zip(*predicted), linestyle="--", color="black", label="cost model (before-LLM pruning)")
    axis.set(xlabel="visual tokens pruned (%)", ylabel="prefill speedup (×)", title=f"{result['model']}, batch {batch}")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)
