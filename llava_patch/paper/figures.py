"""Retention figures from data (`llava-patch figures`): the papers' "performance kept vs % of visual
tokens pruned" curves from the published numbers, with reproduced points overlaid where they exist.

- `retention.png/.pdf`: each paper's average per method and model against the reduction ratio, the
  unpruned model as a horizontal line (FasterVLM's Average is already relative; VTC-CLS's is a mean).
- `retention_relative.png/.pdf`: the same as % of the unpruned average, 95% pruning marked.
- `benchmarks_<paper>_<model>.png/.pdf`: one small panel per benchmark.
Figures carry no timestamps: the same inputs give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..plotting import save_figure
from .published import NO_IMAGE, UNPRUNED
from .tables import column_title, tables_with_runs

PRUNED_METHODS_ORDER = ("fastv", "fitprune", "sparsevlm", "prumerge_plus", "fastervlm", "vtc_cls")


def _series(table: dict, benchmark: str, metric: str) -> tuple[dict[str, list[tuple]], float | None, float | None]:
    """Per pruning method: sorted (ratio %, published, reproduced) points of one (benchmark, metric)
    column; the unpruned published and reproduced values."""
    series: dict[str, list[tuple]] = {}
    unpruned = unpruned_reproduced = None
    for (key, column, cell_metric), cell in table["cells"].items():
        if (column, cell_metric) != (benchmark, metric):
            continue
        method, _, ratio = key
        if method == UNPRUNED:
            unpruned, unpruned_reproduced = cell.published, cell.reproduced
        elif method != NO_IMAGE:
            series.setdefault(method, []).append((100 * ratio, cell.published, cell.reproduced))
    ordered = {m: sorted(series[m]) for m in sorted(series, key=lambda m: (m not in PRUNED_METHODS_ORDER,
               PRUNED_METHODS_ORDER.index(m) if m in PRUNED_METHODS_ORDER else 0, m))}
    return ordered, unpruned, unpruned_reproduced


def _panel(axis, table: dict, column: tuple[str, str], relative: bool, title: str) -> None:
    series, unpruned, unpruned_reproduced = _series(table, *column)
    scale = 100.0 / unpruned if relative and unpruned else 1.0
    for index, (method, points) in enumerate(series.items()):
        color = f"C{index}"
        axis.plot([p[0] for p in points], [p[1] * scale for p in points], marker="o", color=color, label=method)
        reproduced = [(p[0], p[2] * scale) for p in points if p[2] is not None]
        if reproduced:
            axis.scatter(*zip(*reproduced), facecolors="none", edgecolors=color, s=80, linewidths=1.5,
                         label=f"{method} (reproduced)")
    if unpruned is not None:
        axis.axhline(unpruned * scale, color="black", linestyle="--", linewidth=1, label="unpruned")
    if unpruned_reproduced is not None:
        axis.axhline(unpruned_reproduced * scale, color="gray", linestyle=":", linewidth=1, label="unpruned (reproduced)")
    if relative:
        axis.axvline(95, color="red", linewidth=0.8, alpha=0.6)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("visual tokens pruned (%)", fontsize=8)
    axis.tick_params(labelsize=7)


def retention_figure(tables: dict, relative: bool = False):
    averages = {key: next(column for column in table["columns"] if column[0] == "average")
                for key, table in tables.items() if any(column[0] == "average" for column in table["columns"])}
    figure = Figure(figsize=(4.2 * len(averages), 3.6))
    axes = figure.subplots(1, len(averages), squeeze=False)
    for axis, ((paper, model), column) in zip(axes[0], averages.items()):
        _panel(axis, tables[(paper, model)], column, relative, f"{paper}: {model} ({column[1]})")
        axis.set_ylabel("% of unpruned average" if relative else "average (as published)", fontsize=8)
        axis.legend(fontsize=6)
    figure.tight_layout()
    return figure


def benchmark_figure(table: dict, paper: str, model: str):
    columns = table["columns"]
    width = 4
    rows = -(-len(columns) // width)
    figure = Figure(figsize=(3.4 * width, 2.8 * rows))
    axes = figure.subplots(rows, width, squeeze=False)
    for axis, column in zip(axes.flat, columns):
        _panel(axis, table, column, False, f"{column_title(paper, column[0])} ({column[1]})")
    for axis in list(axes.flat)[len(columns):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=6)
    figure.suptitle(f"{paper}: {model}", fontsize=10)
    figure.tight_layout()
    return figure


def write_figures(output: str | Path, runs_root: str | Path | None = None, published_csv: str | Path | None = None) -> list[Path]:
    """The retention figures of the published numbers and the runs under `runs_root` (a directory;
    see `tables_with_runs`) under `output`."""
    tables = tables_with_runs(runs_root, published_csv)
    output = Path(output)
    paths = save_figure(retention_figure(tables), output / "retention")
    paths += save_figure(retention_figure(tables, relative=True), output / "retention_relative")
    for (paper, model), table in tables.items():
        paths += save_figure(benchmark_figure(table, paper, model), output / f"benchmarks_{paper}_{model}")
    return paths


def write_attention_figures(model_path: str | Path, samples: list[dict], output: str | Path,
                            image_root: str | Path | None = None) -> list[Path]:
    """The attention analyses of FasterVLM's paper on a transformers LLaVA model and samples in LLaVA's
    instruction format: the attention-map figure of the first sample, the attention shift (bars and
    heat maps) and the attention dispersion over all samples."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from . import analysis

    model = LlavaForConditionalGeneration.from_pretrained(model_path).eval()
    processor = AutoProcessor.from_pretrained(model_path)
    output = Path(output)
    first = samples[0]
    inputs = analysis.attention_map_inputs(model, processor, analysis.sample_image(first, image_root),
                                           analysis.first_question(first))
    paths = save_figure(analysis.attention_map_figure(inputs.image, inputs.cls_scores, inputs.selections,
                                                      inputs.fastv_scores), output / "attention_maps")
    records = analysis.collect(model, processor, samples, image_root=image_root)
    shift, cls_scores = records.mean_shift(), records.cls_scores.mean(dim=0)
    layers = len(model.model.language_model.layers)
    paths += save_figure(analysis.shift_bars_figure(shift, cls_scores, layer=layers // 2), output / "attention_shift_bars")
    paths += save_figure(analysis.shift_heatmaps_figure(shift, cls_scores, layers=[0, layers // 2, layers - 1]),
                         output / "attention_shift_heatmaps")
    paths += save_figure(analysis.dispersion_figure(records.cls_scores, records.last_token_scores),
                         output / "attention_dispersion")
    return paths
