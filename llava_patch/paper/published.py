"""The two papers' published numbers (package data `llava_patch/paper/data/*.csv`) and their averaging rules.

`published.csv` holds one row per printed number of the FasterVLM (arXiv 2412.01818 v1) and VTC-CLS
(arXiv 2412.05819) result tables; `published_efficiency.csv` the efficiency / latency tables. Each row
keeps the printed string (`printed`) beside its float `value` and names its source (repository, commit,
file). See `paper_tables/README.md`.

The CSV keeps each paper's own column names. Every one but "average" is a benchmark record of
`llava_patch.eval.benchmarks` (`benchmark_record`): FasterVLM's "sqa_img" and VTC-CLS's "sqa" are both
the record "sqa" (LLaVA's ScienceQA test run, headline the image-question accuracy; VTC-CLS prints it
as "SciQA" and does not say which subset it reports), every other name is its record's name.
"""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"  # package data: an installed package has them too
PUBLISHED_CSV = DATA / "published.csv"
EFFICIENCY_CSV = DATA / "published_efficiency.csv"

# The CSV's method names of the rows that prune nothing: the unpruned model, and FasterVLM's 100 %
# (no image at all) rows.
UNPRUNED, NO_IMAGE = "none", "no_image"
AVERAGE = "average"  # the CSV's benchmark name of each paper's average column
CSV_RECORDS = {"sqa_img": "sqa"}  # CSV benchmark name → benchmark record, where they differ

# The benchmarks each paper's average runs over, by their CSV names (in the papers' column order).
FASTERVLM_BENCHMARKS = ("vqav2", "gqa", "vizwiz", "sqa_img", "textvqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet")
FASTERVLM_VIDEO_BENCHMARKS = ("tgif", "msvd", "msrvtt", "activitynet")
VTC_CLS_BENCHMARKS = ("sqa", "gqa", "textvqa", "pope", "mmbench", "mmbench_cn", "mmvet", "seed")
VIDEO_MODELS = ("video-llava-7b",)
RATIO_TOLERANCE = 1e-3  # VTC-CLS ratios are derived from token counts (rounded to 4 decimals)


def benchmark_record(csv_benchmark: str) -> str | None:
    """The benchmark record (`llava_patch.eval.benchmarks.get_benchmark`) a CSV benchmark column is;
    None for the average column."""
    return None if csv_benchmark == AVERAGE else CSV_RECORDS.get(csv_benchmark, csv_benchmark)


def _parse(row: dict[str, str]) -> dict:
    out: dict = dict(row)
    out["value"] = float(row["value"])
    out["tokens"] = int(row["tokens"]) if row.get("tokens") else None
    out["reduction_ratio"] = float(row["reduction_ratio"]) if row.get("reduction_ratio") else None
    return out


def _read(path: str | Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [_parse(row) for row in csv.DictReader(handle)]


def load_published(path: str | Path | None = None, include_reference: bool = True) -> list[dict]:
    """Rows of `published.csv` (default: the repository's copy) as dicts.

    `value` is a float, `tokens` an int and `reduction_ratio` a float; both are None on VTC-CLS's
    reference rows of other models (BLIP2, InstructBLIP, IDEFICS, Qwen-VL-Chat), which print no budget;
    `include_reference=False` leaves those rows out.
    """
    rows = _read(PUBLISHED_CSV if path is None else path)
    return rows if include_reference else [row for row in rows if row["tokens"] is not None]


def load_efficiency(path: str | Path | None = None) -> list[dict]:
    """Rows of `published_efficiency.csv` (default: the repository's copy), parsed like `load_published`.

    FasterVLM's efficiency table prints FLOPs, KV storage and GPU memory once for its sdpa and flash
    rows: those rows carry `attention == "sdpa+flash"`; `attention` is empty where the paper names none.
    """
    return _read(EFFICIENCY_CSV if path is None else path)


def _same_ratio(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) <= RATIO_TOLERANCE


def _values(rows: list[dict], paper: str, model: str, method: str, reduction_ratio: float | None,
            metric: str | None) -> dict[str, float]:
    """benchmark → value for one table row (optionally one metric; rows without a metric key always match)."""
    values: dict[str, float] = {}
    for row in rows:
        if (row.get("paper", paper) == paper and row.get("model", model) == model and row["method"] == method
                and _same_ratio(row.get("reduction_ratio"), reduction_ratio)
                and (metric is None or row.get("metric", metric) == metric)):
            values[row["benchmark"]] = float(row["value"])
    return values


def recompute_average(rows: list[dict], paper: str, model: str, method: str, reduction_ratio: float | None,
                      metric: str | None = None) -> float:
    """The paper's average for one (model, method, reduction ratio) row, from its benchmark values.

    - FasterVLM: mean over its 10 benchmarks of value / unpruned value × 100 (MME as its perception
      total); the unpruned row is method `UNPRUNED` ("none") at ratio 0. For Video-LLaVA the mean runs
      over its 4 benchmarks for one `metric` ("accuracy", the default, or "score").
    - VTC-CLS: plain mean of its 8 columns.

    Raises KeyError when a benchmark value (or the unpruned one) is missing.
    """
    if paper == "vtc_cls":
        values = _values(rows, paper, model, method, reduction_ratio, metric)
        return sum(values[b] for b in VTC_CLS_BENCHMARKS) / len(VTC_CLS_BENCHMARKS)
    if paper != "fastervlm":
        raise ValueError(f"unknown paper {paper!r}")
    if model in VIDEO_MODELS:
        benchmarks, metric = FASTERVLM_VIDEO_BENCHMARKS, metric or "accuracy"
    else:
        benchmarks = FASTERVLM_BENCHMARKS
    values = _values(rows, paper, model, method, reduction_ratio, metric)
    unpruned = _values(rows, paper, model, UNPRUNED, 0.0, metric)
    return 100.0 * sum(values[b] / unpruned[b] for b in benchmarks) / len(benchmarks)


def rounding_tolerance(printed: str) -> float:
    """Half a unit of the last printed digit of `printed` ("89.41%" → 0.005, "58.4" → 0.05)."""
    digits = printed.strip().rstrip("%")
    decimals = len(digits.split(".", 1)[1]) if "." in digits else 0
    return 0.5 * 10.0 ** -decimals
