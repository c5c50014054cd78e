"""The figures of `llava-patch figures`: retention curves from data, and FasterVLM's attention analyses
on a model.

Retention: the papers' "performance kept vs % of visual tokens pruned" curves from the published
numbers, with reproduced points overlaid where they exist.

- `retention.png/.pdf`: each paper's average per method and model against the reduction ratio, the
  unpruned model as a horizontal line (FasterVLM's Average is already relative; VTC-CLS's is a mean).
- `retention_relative.png/.pdf`: the same as % of the unpruned average, 95% pruning marked.
- `benchmarks_<paper>_<model>.png/.pdf`: one small panel per benchmark.

Attention (`analysis`), by default on the toy LLaVA and four real photos (`load_attention_study`):
- `attention_maps_<sample>`: the [CLS] heat map, the tokens FasterVLM and VTC-CLS keep, FastV's
  last-token attention, for each of the first samples;
- `attention_shift_bars`, `attention_shift_heatmaps`, `attention_dispersion`: over all samples.
Each carries a caption line naming the model and the samples, and a JSON sidecar (same stem, .json)
with the model, checkpoint, samples and their credits, the select layer and the command that made it.

Figures carry no timestamps: the same inputs give byte-identical files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from transformers import AutoProcessor, LlavaForConditionalGeneration

from ..models import toy
from ..models.checkpoint import read_config, sha256
from ..plotting import save_figure
from ..tower import llava_vision_geometry
from . import analysis
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


# ---------------------------------------------------------------------------------------------------
# Attention figures (FasterVLM's analyses, `analysis`), each saying which model and samples made it

MAP_SAMPLES = 4  # attention-map figures: one per sample, for the first few samples
TOY_PROJECTOR_NOTE = "projector trained on easy-VQA"
PHOTOS_SOURCE = "photos: scikit-image (public domain / CC0)"


@dataclass
class AttentionStudy:
    """A loaded, unpatched transformers LLaVA and the instruction samples its attention figures are
    drawn from, with where both came from: `caption` goes on every figure, `metadata` into its JSON
    sidecar."""

    model: LlavaForConditionalGeneration  # in eval mode
    processor: Any  # its transformers processor (tokenizer and image processor)
    samples: list[dict]  # LLaVA instruction samples, optionally with a "credit" for their image
    image_root: Path | None  # what the samples' image paths are relative to
    checkpoint: Path
    model_name: str  # e.g. "toy-llava-dinov2-smollm2-<projector hash> (projector trained on easy-VQA)"
    samples_source: str  # e.g. PHOTOS_SOURCE, or the samples file
    provenance: dict[str, str]  # further facts for the sidecar (the toy's projector hash, the image root)

    @property
    def caption(self) -> str:
        return f"{self.model_name} — {self.samples_source}"

    def metadata(self, figure: str, samples: list[dict], made_by: str) -> dict[str, Any]:
        """The sidecar of `figure`, drawn from `samples` (a subset of the study's) by `made_by`."""
        return {
            "figure": figure, "caption": self.caption, "model": self.model_name, "checkpoint": _shown(self.checkpoint),
            "prompt_format": getattr(self.model.config, "prompt_format", None) or "vicuna_v1",
            "select_layer": llava_vision_geometry(self.model.config).select_layer, **self.provenance,
            "samples_source": self.samples_source,
            "samples": [{"id": sample.get("id"), "image": str(sample.get("image")),
                         "question": analysis.first_question(sample), "credit": sample.get("credit")}
                        for sample in samples],
            "made_by": made_by,
        }


def load_attention_study(model: str | Path | None = None, samples: str | Path | None = None,
                         image_root: str | Path | None = None, limit: int | None = None) -> AttentionStudy:
    """The model and samples of the attention figures. By default the toy LLaVA (`toy_checkpoint()`,
    with the committed projector) on the four real photos (`analysis.photo_samples()`).

    model: a transformers LLaVA checkpoint folder; samples: a JSON list in LLaVA's instruction format
    whose image paths are relative to `image_root`; limit: the first N samples."""
    provenance: dict[str, str] = {}
    if model is None:
        checkpoint = toy.toy_checkpoint()
        model_name = f"{checkpoint.name} ({TOY_PROJECTOR_NOTE})"
        provenance["projector_sha256"] = sha256(toy.PROJECTOR)  # the folder name holds only its first 12 digits
    else:
        checkpoint = Path(model)
        model_name = checkpoint.name
    if samples is None:
        chosen, image_root = analysis.photo_samples()
        samples_source = PHOTOS_SOURCE
        provenance["image_root"] = "llava_patch.models.toy_parts.parts_folder()"  # a machine path: named, not shown
    else:
        chosen, samples_source = read_config(Path(samples)), f"samples: {Path(samples).name}"
        if image_root is not None:
            provenance["image_root"] = _shown(Path(image_root))
    loaded = LlavaForConditionalGeneration.from_pretrained(checkpoint).eval()
    return AttentionStudy(loaded, AutoProcessor.from_pretrained(checkpoint), chosen[:limit],
                          Path(image_root) if image_root is not None else None, checkpoint, model_name,
                          samples_source, provenance)


def attention_map_figures(study: AttentionStudy, count: int = MAP_SAMPLES) -> dict[str, Figure]:
    """For each of the first `count` samples, `attention_maps_<id>`: the image as the tower saw it, its
    [CLS] heat map, the tokens FasterVLM and VTC-CLS keep at 75/90/95%, FastV's last-token attention;
    captioned with the model, the question and the image's credit."""
    figures = {}
    for sample in study.samples[:count]:
        question = analysis.first_question(sample)
        inputs = analysis.attention_map_inputs(study.model, study.processor,
                                               analysis.sample_image(sample, study.image_root), question)
        figure = analysis.attention_map_figure(inputs.image, inputs.cls_scores, inputs.selections, inputs.fastv_scores)
        credit = f" — {sample['credit']}" if sample.get("credit") else ""
        figures[map_name(sample)] = _captioned(figure, f"{study.caption}\n{sample.get('id')}: “{question}”{credit}")
    return figures


def attention_analysis_figures(study: AttentionStudy, progress: bool = False) -> dict[str, Figure]:
    """Over all the study's samples, captioned with the model: the attention shift as bars (LLM layer
    L/2) and as heat maps (layers 0, L/2, L−1), and the attention dispersion."""
    records = analysis.collect(study.model, study.processor, study.samples, image_root=study.image_root,
                               progress=progress)
    shift, cls_scores = records.mean_shift(), records.cls_scores.mean(dim=0)
    layers = study.model.config.text_config.num_hidden_layers
    figures = {
        "attention_shift_bars": analysis.shift_bars_figure(shift, cls_scores, layer=layers // 2),
        "attention_shift_heatmaps": analysis.shift_heatmaps_figure(shift, cls_scores, layers=[0, layers // 2, layers - 1]),
        "attention_dispersion": analysis.dispersion_figure(records.cls_scores, records.last_token_scores),
    }
    caption = f"{study.caption} ({len(study.samples)} samples)"
    return {name: _captioned(figure, caption) for name, figure in figures.items()}


def write_attention_figures(study: AttentionStudy, output: str | Path,
                            made_by: str = "llava_patch.paper.figures.write_attention_figures") -> list[Path]:
    """The attention figures of `study` under `output` (PNG, PDF and a JSON sidecar each, see
    `AttentionStudy.metadata`); made_by: the command or function named in the sidecars."""
    output = Path(output)
    paths: list[Path] = []
    maps = attention_map_figures(study)
    for sample in study.samples[:MAP_SAMPLES]:
        name = map_name(sample)
        paths += save_figure(maps[name], output / name, study.metadata(name, [sample], made_by))
    for name, figure in attention_analysis_figures(study).items():
        paths += save_figure(figure, output / name, study.metadata(name, study.samples, made_by))
    return paths


def map_name(sample: dict) -> str:
    """The file stem of a sample's attention-map figure: `attention_maps_<id>`, the id made file-safe."""
    return "attention_maps_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", str(sample.get("id")))


def _captioned(figure: Figure, caption: str) -> Figure:
    figure.suptitle(caption, fontsize=9)
    return figure


def _shown(path: Path) -> str:
    """A path as the sidecars record it: "~/…" under the home folder (committed sidecars should not
    carry one machine's home)."""
    path = path.resolve()
    return str(Path("~") / path.relative_to(Path.home())) if path.is_relative_to(Path.home()) else str(path)


def sweep_summary(folder: str | Path) -> list:
    """What a notebook shows of a finished sweep under `folder` (`llava-patch reproduce`, e.g.
    runs/reproduce/toy): its results.md and retention.png as IPython display objects, or a one-line
    note when it has not been run."""
    from IPython.display import Image, Markdown

    folder = Path(folder)
    table, figure = folder / "results.md", folder / "retention.png"
    if not (table.is_file() and figure.is_file()):
        return [Markdown(f"No sweep results under `{folder}` (`llava-patch reproduce` writes them).")]
    return [Markdown(table.read_text(encoding="utf-8")), Image(filename=str(figure))]
