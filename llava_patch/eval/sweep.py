"""A sweep: every method × reduction ratio × benchmark through the runner, plus the unpruned model and
the same questions without the image, then one results table (CSV + Markdown, each headline with its
95% bootstrap interval over questions) and a retention figure (each benchmark's headline metric vs %
of visual tokens pruned; unpruned and no-image as horizontal lines). Finished runs are skipped, so a
stopped sweep resumes where it stopped. `llava-patch reproduce` (`make reproduce`) calls `reproduce`:
without a checkpoint or data root, the toy LLaVA (`llava_patch.models.toy`) on a sample of easy-VQA's
test split (`llava_patch.eval.easyvqa`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable

from .. import method_info, methods as registered_methods
from .benchmarks import get_benchmark
from .bootstrap import headline_interval
from .files import read_json, write_atomic
from .runner import ANSWERS, MANIFEST, METRICS, RunConfig, run

RATIOS = (0.75, 0.9, 0.95)
BENCHMARKS = ("pope", "gqa")  # a real sweep's default (CKPT/DATA)
TOY_BENCHMARKS = ("easyvqa", "easyvqa_yesno")
TOY_IMAGES = 9  # easy-VQA test images of the default sweep: 21 short-answer, 60 yes/no questions (fits 10 min)
NO_IMAGE = "no image"  # the row of questions asked without their image


def default_methods() -> list[str]:
    """The unpruned method(s), then every registered method that takes a reduction ratio (and no recipe
    fitted to the model: FitPrune's rows come from the reproduce scripts, with recipes)."""
    infos = [method_info(name) for name in registered_methods()]
    return [info.name for info in sorted(infos, key=lambda info: (info.takes_budget, info.name))
            if not info.takes_budget or info.takes_reduction_ratio and not info.needs_recipe]


def reproduce(model: str | None = None, data_root: str | Path | None = None,
              output_root: str | Path = "runs/reproduce", benchmarks: list[str] | tuple[str, ...] | None = None,
              methods: list[str] | None = None, ratios: list[float] | tuple[float, ...] = RATIOS,
              backend: str = "llava", batch_size: int = 8, limit: int | None = None,
              threads: int | None = None, images: int | None = None) -> list[dict]:
    """The sweep of `methods` (default: `default_methods()`) × `ratios` × `benchmarks`, with the no-image
    baseline, and its table and figure under `output_root`. Without `model` and `data_root`: the toy
    LLaVA (transformers backend, float32) on `images` easy-VQA test images (both toy benchmarks),
    under `output_root`/toy. threads: torch's intra-op CPU threads (default: torch's choice)."""
    import torch

    output_root, dtype = Path(output_root), None
    if (model is None) != (data_root is None):
        given, missing = ("CKPT/--model", "DATA/--data-root") if model is not None else ("DATA/--data-root", "CKPT/--model")
        raise ValueError(f"{given} is set but {missing} is not: set both for a real sweep, neither for the toy "
                         "LLaVA on easy-VQA")
    if model is None:
        images = images or TOY_IMAGES
        output_root = output_root / "toy"
        model, data_root = toy_sample(output_root, images)
        backend, dtype, benchmarks = "hf", "float32", benchmarks or TOY_BENCHMARKS
        print(f"CKPT/DATA not set: the toy LLaVA ({model}) on {images} easy-VQA test images, under {output_root} "
              "(a small trained model on a toy task: what pruning does to it, not the papers' numbers)")
    if threads is not None:
        torch.set_num_threads(threads)
    output_root.mkdir(parents=True, exist_ok=True)
    rows = sweep(str(model), Path(data_root), output_root, list(benchmarks or BENCHMARKS),
                 methods or default_methods(), ratios, backend, batch_size, dtype, limit)
    print((output_root / "results.md").read_text())
    print(f"wrote {output_root / 'results.csv'}, {output_root / 'results.md'}, {output_root / 'retention.png'} (.pdf)")
    return rows


def sweep(model: str, data_root: Path, output_root: Path, benchmarks: list[str], methods=None, ratios=RATIOS,
          backend: str = "llava", batch_size: int = 8, dtype: str | None = None, limit: int | None = None,
          no_image: bool = True) -> list[dict]:
    """Every run of the sweep (resumably), then results.csv, results.md and retention.png/.pdf.
    no_image: also ask each benchmark's questions without their image (the text-only baseline)."""
    methods = default_methods() if methods is None else methods
    for method in methods:
        info = method_info(method)
        if info.takes_budget and not info.takes_reduction_ratio:
            raise ValueError(f"method {method!r} takes keep = {', '.join(map(str, info.budgets))} only; "
                             "the sweep runs reduction ratios")
    settings = []
    for benchmark in benchmarks:
        settings += [(benchmark, method, ratio) for method in methods
                     for ratio in (ratios if method_info(method).takes_budget else [0.0])]
        settings += [(benchmark, NO_IMAGE, 1.0)] if no_image else []
    rows = []
    for number, (benchmark, method, ratio) in enumerate(settings, start=1):
        output = output_root / benchmark / (f"{method}-{ratio:g}" if method != NO_IMAGE else "no-image")
        takes_budget = method != NO_IMAGE and method_info(method).takes_budget
        run(RunConfig(model=model, benchmark=benchmark, data_root=str(data_root), output_dir=str(output),
                      backend=backend, method="none" if method == NO_IMAGE else method,
                      reduction_ratio=ratio if takes_budget else None, batch_size=batch_size, dtype=dtype,
                      limit=limit, no_image=method == NO_IMAGE), label=f"run {number}/{len(settings)}")
        rows.append(run_row(benchmark, method, ratio, output, data_root, limit is not None))
    _write_tables(rows, output_root)
    _plot(rows, output_root / "retention")
    return rows


def run_row(benchmark: str, method: str, ratio: float, output: Path, data_root: Path, partial: bool) -> dict:
    """One table row from a run folder: its headline metric with the 95% bootstrap interval and the
    visual tokens it measured (`partial`: the run may hold fewer answers than questions)."""
    metrics = read_json(output / METRICS) if (output / METRICS).exists() else {}
    manifest = read_json(output / MANIFEST)
    tokens = manifest["measured_visual_tokens"] or {}
    metric = get_benchmark(benchmark).headline
    interval = headline_interval(benchmark, output / ANSWERS, data_root, allow_partial=partial) if metrics else None
    low, high = interval or (None, None)
    return {"benchmark": benchmark, "method": method, "reduction_ratio": ratio, "metric": metric,
            "value": metrics.get(metric), "ci95_low": low, "ci95_high": high,
            "visual_tokens_mean": tokens.get("mean", 0.0), "questions": manifest["questions"],
            "model": manifest["model"], "run": str(output)}


def add_percent_of_unpruned(rows: list[dict], unpruned: Callable[[dict], bool]) -> None:
    """Set each row's `percent_of_unpruned`: its value over that of its benchmark's `unpruned` row."""
    base = {row["benchmark"]: row["value"] for row in rows if unpruned(row)}
    for row in rows:
        reference = base.get(row["benchmark"])
        row["percent_of_unpruned"] = round(100 * row["value"] / reference, 1) if row["value"] is not None and reference else None


def write_csv(rows: list[dict], path: Path) -> None:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, table.getvalue())


def value_cells(row: dict) -> tuple[str, str]:
    """A row's "value [95% CI]" and "% of unpruned" as the Markdown tables print them."""
    value = "—" if row["value"] is None else f"{row['value']:.1f}"
    if row["ci95_low"] is not None:
        value += f" [{row['ci95_low']:.1f}, {row['ci95_high']:.1f}]"
    return value, "—" if row["percent_of_unpruned"] is None else f"{row['percent_of_unpruned']:.1f}"


def _write_tables(rows: list[dict], output_root: Path) -> None:
    add_percent_of_unpruned(rows, lambda row: row["method"] != NO_IMAGE and not method_info(row["method"]).takes_budget)
    write_csv(rows, output_root / "results.csv")
    lines = ["| benchmark | method | pruned | visual tokens (mean) | questions | metric | value [95% CI] | % of unpruned |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        value, share = value_cells(row)
        lines.append(f"| {row['benchmark']} | {row['method']} | {row['reduction_ratio']:.0%} | "
                     f"{row['visual_tokens_mean']:.1f} | {row['questions']} | {row['metric']} | {value} | {share} |")
    lines.append("")
    lines.append("Value: the benchmark's headline metric (percent); in brackets its 95% bootstrap interval over the "
                 "questions (1 000 resamples). Visual tokens: measured per sample as they reached the LLM. "
                 f"\"{NO_IMAGE}\": the same questions asked without the image.")
    write_atomic(output_root / "results.md", "\n".join(lines) + "\n")


def _plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    from ..plotting import save_figure

    benchmarks = list(dict.fromkeys(row["benchmark"] for row in rows))
    figure = Figure(figsize=(4.5 * len(benchmarks), 3.6))
    axes = figure.subplots(1, len(benchmarks), squeeze=False)
    for axis, benchmark in zip(axes[0], benchmarks):
        subset = [row for row in rows if row["benchmark"] == benchmark and row["value"] is not None]
        for method in dict.fromkeys(row["method"] for row in subset):
            points = sorted((100 * row["reduction_ratio"], row["value"], row["ci95_low"], row["ci95_high"])
                            for row in subset if row["method"] == method)
            if method == NO_IMAGE:
                axis.axhline(points[0][1], color="grey", linestyle=":", label=NO_IMAGE)
            elif not method_info(method).takes_budget:
                axis.axhline(points[0][1], color="black", linestyle="--", label="unpruned")
            else:
                x, y, low, high = zip(*points)
                errors = None if None in low else [[v - lo for v, lo in zip(y, low)], [hi - v for v, hi in zip(y, high)]]
                axis.errorbar(x, y, yerr=errors, marker="o", capsize=2, label=method)
        record = get_benchmark(benchmark)
        questions = subset[0]["questions"] if subset else 0
        axis.set(title=f"{record.display} ({questions} questions)", xlabel="visual tokens pruned (%)",
                 ylabel=f"{record.headline} (95% bootstrap CI)")
        axis.legend(fontsize=7)
    figure.suptitle(f"model: {Path(rows[0]['model']).name}", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)


def toy_sample(root: Path, images: int) -> tuple[str, str]:
    """The toy checkpoint (built once into the cache) and an easy-VQA sample of `images` test images
    under `root`/data; a `root` holding a sample of another size is refused (its runs would mix)."""
    from ..models.toy import toy_checkpoint
    from .easyvqa import build_easyvqa

    data, marker = root / "data", root / "sample.json"
    held = read_json(marker)["images"] if marker.exists() else images
    if held != images:
        raise ValueError(f"{marker}: {root} holds the sweep of {held} easy-VQA images, not {images}; "
                         "choose another --output-root")
    model = toy_checkpoint()
    if not data.exists():
        root.mkdir(parents=True, exist_ok=True)
        build_easyvqa(data, images=images)
        write_atomic(marker, json.dumps({"images": images}) + "\n")
    return str(model), str(data)
