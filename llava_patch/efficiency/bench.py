"""Latency and memory of pruned LLaVA models, measured — and the reference approach beside them.

`llava-patch bench` builds LLaVA architectures from configs with random weights (no download): the
real LLaVA-1.5-7B on a GPU in fp16, a scaled-down one with the real token geometry (336 px, 576
patches) on CPU. For `none`, `fastervlm`, `vtc_cls` and `fastv` at 0/75/90/95% pruning and several
batch sizes it measures: the vision tower with selection (and the selection's overhead over the plain
tower call LLaVA makes), prefill, time to first token, decode tokens/s, peak memory (GPU) and KV-cache
bytes. The **reference approach** runs as the original repositories do: the tower in eager attention
with `output_attentions=True` in every layer, batch size 1. Every time is the median of repeated runs
after warm-up, synchronised with CUDA events on a GPU. Results: JSON + Markdown + PNG.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from .. import apply
from .cost import estimate, spec_from_config
from ..methods.fastervlm import FasterVLM
from ..tower import encode_and_select

CONFIGS = {
    "llava-1.5-7b": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
                         text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)),
    "cpu-small": dict(vision=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8),
                      text=dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8)),
    "tiny": dict(vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4),
                 text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)),
}
METHODS = ("none", "fastervlm", "vtc_cls", "fastv")
RATIOS = (0.75, 0.9, 0.95)
IMAGE_TOKEN = 32000


def build_model(name: str, dtype: torch.dtype, device: str) -> LlavaForConditionalGeneration:
    """A LLaVA-1.5-shaped model with random weights: CLIP-style tower at 336 px / 14 px patches."""
    sizes = CONFIGS[name]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
                                       **sizes["vision"]),
        text_config=LlamaConfig(vocab_size=32064, max_position_embeddings=4096, **sizes["text"]),
        image_token_id=IMAGE_TOKEN, vision_feature_layer=-2, vision_feature_select_strategy="default",
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
    """A POPE-length prompt per row: text tokens around 576 image placeholders, random pixels."""
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, 30000, (batch, text_tokens), generator=generator)
    ids = torch.cat([text[:, :5], torch.full((batch, 576), IMAGE_TOKEN), text[:, 5:]], dim=1)
    pixels = torch.randn(batch, 3, 336, 336, generator=generator)
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
    return output.hidden_states[-2], sum(a.numel() * a.element_size() for a in output.attentions)


def _peak_memory(device: str, function: Callable[[], object]) -> int | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def run_benchmark(name: str, device: str, dtype: torch.dtype, batch_sizes: list[int], repeats: int, warmup: int,
                  new_tokens: int, text_tokens: int, throughput_prompts: int) -> dict:
    model = build_model(name, dtype, device)
    spec = spec_from_config(model.config, name)
    rows, tower = [], model.model.vision_tower
    with torch.inference_mode():
        one = _inputs(1, text_tokens, device, dtype)
        plain = measure(lambda: tower(one["pixel_values"], output_hidden_states=True), device, warmup, repeats)
        ours = measure(lambda: encode_and_select(tower, one["pixel_values"], FasterVLM(), 29, spec.vision.layers - 2,
                                                 stop_at_select_layer=False), device, warmup, repeats)
        stopped = measure(lambda: encode_and_select(tower, one["pixel_values"], FasterVLM(), 29, spec.vision.layers - 2),
                          device, warmup, repeats)
        reference = measure(lambda: reference_vision(model, one["pixel_values"]), device, warmup, repeats)
        _, reference_bytes = reference_vision(model, one["pixel_values"])
        vision = {
            "transformers_tower_s": statistics.median(plain), "ours_full_tower_s": statistics.median(ours),
            "ours_stop_at_select_layer_s": statistics.median(stopped), "reference_eager_all_maps_s": statistics.median(reference),
            "selection_overhead_fraction": statistics.median(ours) / statistics.median(plain) - 1,
            "reference_attention_map_bytes": reference_bytes,
            # the [CLS] row per scored layer: (images, heads, 1+P) float32 — what our selection adds
            "ours_extra_bytes_per_image": 4 * tower.config.num_attention_heads * (spec.patches + 1),
            "reference_peak_bytes": _peak_memory(device, lambda: reference_vision(model, one["pixel_values"])),
            "ours_peak_bytes": _peak_memory(device, lambda: encode_and_select(tower, one["pixel_values"], FasterVLM(), 29,
                                                                              spec.vision.layers - 2)),
        }
        for batch in batch_sizes:
            inputs = _inputs(batch, text_tokens, device, dtype)
            for method in METHODS:
                for ratio in ([0.0] if method == "none" else RATIOS):
                    rows.append(_measure_setting(model, spec, method, ratio, batch, inputs, device, warmup, repeats,
                                                 new_tokens, text_tokens))
        throughput = _throughput(model, spec, device, dtype, throughput_prompts, text_tokens, new_tokens, max(batch_sizes))
    return {
        "what": __doc__.split("\n\n")[0], "model": name, "device": _device_name(device), "dtype": str(dtype),
        "torch": torch.__version__, "repeats": repeats, "warmup": warmup, "new_tokens": new_tokens,
        "text_tokens": text_tokens, "timing": "median seconds; CUDA events + synchronize on GPU, wall clock on CPU",
        "vision": vision, "settings": rows, "throughput": throughput,
    }


def _measure_setting(model, spec, method, ratio, batch, inputs, device, warmup, repeats, new_tokens, text_tokens) -> dict:
    budget = {} if method == "none" else {"reduction_ratio": ratio}
    with apply(model, method, **budget) as handle:
        prefill = statistics.median(measure(lambda: model(**inputs, use_cache=True), device, warmup, repeats))
        first = statistics.median(measure(lambda: model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, do_sample=False),
                                          device, warmup, repeats))
        whole = statistics.median(measure(lambda: model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                                 do_sample=False), device, warmup, repeats))
        cache = model(**inputs, use_cache=True).past_key_values
        kv_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
        peak = _peak_memory(device, lambda: model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                           do_sample=False))
        visual = handle.last_visual_tokens
    return {"method": method, "reduction_ratio": ratio, "batch": batch, "visual_tokens": visual[0],
            "prefill_s": prefill, "ttft_s": first, "decode_tokens_per_s": batch * (new_tokens - 1) / max(whole - first, 1e-9),
            "kv_cache_bytes": kv_bytes, "peak_bytes": peak,
            "model_prefill_macs": forward_macs(spec, method, ratio, text_tokens, visual[0])}


def forward_macs(spec, method: str, ratio: float, text_tokens: int, visual_tokens: int) -> int:
    """MACs of one forward over the prompt as `model(**inputs)` runs it: the (unpruned) tower, the projector,
    the LLM prefill, and the LM head over every position it returns logits for (text + kept visual)."""
    macs = estimate(spec, method, reduction_ratio=ratio if method != "none" else None, text_tokens=text_tokens)["macs"]
    lm_head = (text_tokens + visual_tokens) * spec.llm.hidden * spec.vocab
    return macs["vision_tower"] + macs["projector"] + macs["llm_prefill"] + lm_head


def _throughput(model, spec, device, dtype, prompts, text_tokens, new_tokens, batch) -> dict:
    """Questions per second over `prompts` POPE-length prompts: ours (FasterVLM 95%, batched) vs the
    reference approach (eager tower with all attention maps, batch 1, then the pruned LLM)."""
    def ours():
        with apply(model, "fastervlm", reduction_ratio=0.95):
            for start in range(0, prompts, batch):
                model.generate(**_inputs(min(batch, prompts - start), text_tokens, device, dtype),
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    def reference():
        with apply(model, "fastervlm", reduction_ratio=0.95):
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


def write_results(result: dict, output: Path) -> list[Path]:
    """results.json, results.md (a table per batch size) and speedup.png under `output` (a new directory)."""
    from matplotlib.figure import Figure

    from ..plotting import save_figure

    output.mkdir(parents=True, exist_ok=False)
    vision = result["vision"]
    lines = [f"# Efficiency benchmark — {result['model']} on {result['device']} ({result['dtype']})", "",
             f"{result['timing']}; {result['repeats']} repeats after {result['warmup']} warm-up calls; "
             f"prompts of {result['text_tokens']} text tokens + 576 image tokens; {result['new_tokens']} new tokens. "
             "prefill = one forward over the prompt (vision tower included; all-position logits); TTFT = generate() of "
             "one token; cost-model ratio = MACs of that forward unpruned / pruned.", "",
             "## Vision tower, batch 1", "",
             "| call | median s |", "|---|---|"]
    for key in ("transformers_tower_s", "ours_full_tower_s", "ours_stop_at_select_layer_s", "reference_eager_all_maps_s"):
        lines.append(f"| {key} | {vision[key]:.4f} |")
    lines += ["", f"Selection overhead over the plain tower call: {vision['selection_overhead_fraction']:+.2%}. "
              f"Extra memory of the selection: {vision['ours_extra_bytes_per_image']} bytes per image and scored layer "
              f"(analytical); the reference materialises {vision['reference_attention_map_bytes'] / 2**20:.1f} MiB of "
              "attention maps per image.", "",
              "## Language model", "",
              "| method | pruned | batch | visual tokens | prefill s | TTFT s | decode tok/s | KV MiB | prefill speedup | cost-model ratio | achieved/predicted |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    baseline = {row["batch"]: row for row in result["settings"] if row["method"] == "none"}
    for row in result["settings"]:
        base = baseline[row["batch"]]
        speedup, predicted = base["prefill_s"] / row["prefill_s"], base["model_prefill_macs"] / row["model_prefill_macs"]
        row["prefill_speedup"], row["cost_model_ratio"] = speedup, predicted
        lines.append(f"| {row['method']} | {row['reduction_ratio']:.0%} | {row['batch']} | {row['visual_tokens']} | "
                     f"{row['prefill_s']:.4f} | {row['ttft_s']:.4f} | {row['decode_tokens_per_s']:.1f} | "
                     f"{row['kv_cache_bytes'] / 2**20:.1f} | {speedup:.2f}× | {predicted:.2f}× | {speedup / predicted:.0%} |")
    throughput = result["throughput"]
    lines += ["", f"Throughput over {throughput['prompts']} POPE-length prompts ({throughput['new_tokens']} new tokens): "
              f"ours (FasterVLM 95%, batch {throughput['batch']}) {throughput['ours_questions_per_s']:.2f} questions/s; "
              f"reference approach (eager tower with all maps, batch 1) {throughput['reference_questions_per_s']:.2f} questions/s."]
    (output / "results.md").write_text("\n".join(lines) + "\n")
    (output / "results.json").write_text(json.dumps(result, indent=2) + "\n")  # rows now carry their speedups
    figure = Figure(figsize=(5, 3.5))
    axis = figure.subplots()
    for method in METHODS[1:]:
        points = [(100 * r["reduction_ratio"], r["prefill_speedup"]) for r in result["settings"]
                  if r["method"] == method and r["batch"] == max(baseline)]
        axis.plot(*zip(*points), marker="o", label=method)
    predicted = [(100 * r["reduction_ratio"], r["cost_model_ratio"]) for r in result["settings"]
                 if r["method"] == "fastervlm" and r["batch"] == max(baseline)]
    axis.plot(*zip(*predicted), linestyle="--", color="black", label="cost model (before-LLM pruning)")
    axis.set(xlabel="visual tokens pruned (%)", ylabel="prefill speedup (×)", title=f"{result['model']}, batch {max(baseline)}")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return [output / "results.json", output / "results.md", *save_figure(figure, output / "speedup")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llava-patch bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--model", default="llava-1.5-7b" if gpu else "cpu-small", choices=list(CONFIGS))
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32] if gpu else [1, 8])
    parser.add_argument("--repeats", type=int, default=5 if gpu else 3)
    parser.add_argument("--warmup", type=int, default=2 if gpu else 1)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--text-tokens", type=int, default=60, help="POPE's prompts have about 60 text tokens")
    parser.add_argument("--throughput-prompts", type=int, default=8910 if gpu else 16, help="8 910 = POPE's size")
    parser.add_argument("--output", required=True, help="a new directory, e.g. experiments/efficiency/cpu-small")
    args = parser.parse_args(argv)
    if Path(args.output).exists():
        raise SystemExit(f"--output {args.output} exists; nothing is overwritten")
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    result = run_benchmark(args.model, args.device, dtype, args.batch_sizes, args.repeats, args.warmup,
                           args.new_tokens, args.text_tokens, args.throughput_prompts)
    for path in write_results(result, Path(args.output)):
        print(f"wrote {path}")
    print((Path(args.output) / "results.md").read_text())


if __name__ == "__main__":
    main()
