"""The transcribed published numbers (llava_patch/paper/data/*.csv): averages, table shapes, anchors."""

from __future__ import annotations

from collections import Counter

import pytest

from llava_patch.paper.published import (
    FASTERVLM_BENCHMARKS,
    FASTERVLM_VIDEO_BENCHMARKS,
    VIDEO_MODELS,
    VTC_CLS_BENCHMARKS,
    load_efficiency,
    load_published,
    recompute_average,
    rounding_tolerance,
)

SLACK = 1e-9

# Printed averages that the paper's own rule does not reproduce from the printed cells within half a unit
# of the last printed digit. Each is documented in the CSV's `note` column.
# (paper, model, method, tokens, metric) -> True if the printed average is still reachable once every
# printed input cell may be off by half a unit of its last digit (an artefact of rounding the inputs).
DOCUMENTED_AVERAGE_EXCEPTIONS = {
    # SparseVLM rows: off by 0.16-0.26 points, not a rounding effect (same numbers on the project page).
    ("fastervlm", "llava-1.5-7b", "sparsevlm", 288, "relative_average_percent"): False,
    ("fastervlm", "llava-1.5-7b", "sparsevlm", 144, "relative_average_percent"): False,
    ("fastervlm", "llava-1.5-7b", "sparsevlm", 58, "relative_average_percent"): False,
    ("fastervlm", "llava-next-7b", "sparsevlm", 720, "relative_average_percent"): False,
    # Video-LLaVA relative scores: scores printed to 2 decimals (~0.2 % relative rounding each).
    **{("fastervlm", "video-llava-7b", method, tokens, "relative_score_percent"): True
       for method in ("fastv", "fastervlm") for tokens in (1536, 1024, 512, 208, 104)},
    ("fastervlm", "video-llava-7b", "no_image", 0, "relative_score_percent"): True,
    # VTC-CLS PruMerge+ at 64 tokens: mean of the printed cells is 56.3625, printed 56.3.
    ("vtc_cls", "llava-1.5-7b", "prumerge_plus", 64, "average"): True,
}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_published()


@pytest.fixture(scope="module")
def efficiency() -> list[dict]:
    return load_efficiency()


def _key(row: dict) -> tuple:
    return row["paper"], row["model"], row["method"], row["tokens"], row["metric"]


def _average_metric(row: dict) -> str | None:
    """The per-benchmark metric a Video-LLaVA average runs over ("relative_score_percent" → "score")."""
    return row["metric"].split("_")[1] if row["model"] in VIDEO_MODELS else None


def _bounds(rows: list[dict], row: dict) -> tuple[float, float]:
    """Range of the paper's average when every printed input may be off by half a unit of its last digit."""
    metric = _average_metric(row)

    def cells(method: str, ratio: float) -> dict[str, tuple[float, float]]:
        return {r["benchmark"]: (r["value"], rounding_tolerance(r["printed"])) for r in rows
                if (r["paper"], r["model"], r["method"]) == (row["paper"], row["model"], method)
                and r["reduction_ratio"] == ratio and (metric is None or r["metric"] == metric)}

    own = cells(row["method"], row["reduction_ratio"])
    if row["paper"] == "vtc_cls":
        n = len(VTC_CLS_BENCHMARKS)
        return (sum(own[b][0] - own[b][1] for b in VTC_CLS_BENCHMARKS) / n,
                sum(own[b][0] + own[b][1] for b in VTC_CLS_BENCHMARKS) / n)
    benchmarks = FASTERVLM_VIDEO_BENCHMARKS if row["model"] in VIDEO_MODELS else FASTERVLM_BENCHMARKS
    ref = cells("none", 0.0)
    n = len(benchmarks)
    return (100 * sum((own[b][0] - own[b][1]) / (ref[b][0] + ref[b][1]) for b in benchmarks) / n,
            100 * sum((own[b][0] + own[b][1]) / (ref[b][0] - ref[b][1]) for b in benchmarks) / n)


def test_every_published_average_recomputes(rows):
    averages = [r for r in rows if r["benchmark"] == "average" and r["tokens"] is not None]
    assert len(averages) == 21 + 16 + 16 + 2 * 12 + 10
    mismatched = set()
    for row in averages:
        value = recompute_average(rows, row["paper"], row["model"], row["method"], row["reduction_ratio"],
                                  _average_metric(row))
        if abs(value - row["value"]) > rounding_tolerance(row["printed"]) + SLACK:
            mismatched.add(_key(row))
            assert row["note"].startswith("inconsistent average"), f"undocumented mismatch {_key(row)}: {value:.4f}"
        else:
            assert not row["note"].startswith("inconsistent average"), f"documented but consistent: {_key(row)}"
    assert mismatched == set(DOCUMENTED_AVERAGE_EXCEPTIONS)
    for row in averages:
        if _key(row) in DOCUMENTED_AVERAGE_EXCEPTIONS:
            low, high = _bounds(rows, row)
            tolerance = rounding_tolerance(row["printed"]) + SLACK
            explained = low - tolerance <= row["value"] <= high + tolerance
            assert explained == DOCUMENTED_AVERAGE_EXCEPTIONS[_key(row)], _key(row)
            assert ("within input rounding" in row["note"]) == explained, _key(row)


def test_recompute_average_needs_every_benchmark(rows):
    partial = [r for r in rows if not (r["model"] == "llava-1.5-7b" and r["method"] == "fastervlm"
                                       and r["benchmark"] == "mme")]
    with pytest.raises(KeyError):
        recompute_average(partial, "fastervlm", "llava-1.5-7b", "fastervlm", 0.95)
    assert recompute_average(rows, "vtc_cls", "llava-1.5-7b", "vtc_cls", 1 - 64 / 576) == pytest.approx(58.375)


FASTERVLM_METRICS = {"vqav2": "accuracy", "gqa": "accuracy", "vizwiz": "accuracy", "sqa_img": "accuracy",
                     "textvqa": "accuracy", "pope": "f1", "mme": "perception", "mmbench": "accuracy",
                     "mmbench_cn": "accuracy", "mmvet": "score", "average": "relative_average_percent"}
RATIOS = (0.25, 0.5, 0.75, 0.9, 0.95)


def _cells(rows: list[dict], paper: str, model: str) -> Counter:
    return Counter((r["method"], r["tokens"], r["reduction_ratio"], r["benchmark"], r["metric"])
                   for r in rows if r["paper"] == paper and r["model"] == model)


@pytest.mark.parametrize("model,per_image,full", [("llava-1.5-7b", 1, 576), ("llava-1.5-13b", 1, 576),
                                                  ("llava-next-7b", 5, 2880)])
def test_fastervlm_image_tables_have_exactly_the_printed_cells(rows, model, per_image, full):
    expected = Counter()
    budgets = [("none", full, 0.0), ("no_image", 0, 1.0)]
    for ratio in RATIOS:
        tokens = per_image * round(576 * (1 - ratio))  # 432/288/144/58/29 per image (docs/methods.md §4)
        methods = ["fastv", "fastervlm"] + (["sparsevlm"] if ratio < 0.95 else [])
        methods += ["fitprune"] if model == "llava-1.5-7b" else []
        budgets += [(method, tokens, ratio) for method in methods]
    for method, tokens, ratio in budgets:
        for benchmark, metric in FASTERVLM_METRICS.items():
            expected[(method, tokens, ratio, benchmark, metric)] += 1
    assert _cells(rows, "fastervlm", model) == expected


def test_fastervlm_video_table_has_exactly_the_printed_cells(rows):
    expected = Counter()
    budgets = [("none", 2048, 0.0), ("no_image", 0, 1.0)]
    budgets += [(m, 8 * round(256 * (1 - r)), r) for r in RATIOS for m in ("fastv", "fastervlm")]
    for method, tokens, ratio in budgets:
        for benchmark in FASTERVLM_VIDEO_BENCHMARKS:
            for metric in ("accuracy", "score"):
                expected[(method, tokens, ratio, benchmark, metric)] += 1
        for metric in ("relative_accuracy_percent", "relative_score_percent"):
            expected[(method, tokens, ratio, "average", metric)] += 1
    assert _cells(rows, "fastervlm", "video-llava-7b") == expected


def test_vtc_cls_table_has_exactly_the_printed_cells(rows):
    budgets = [("none", 576)] + [(m, t) for t in (256, 128, 64) for m in ("fastv", "prumerge_plus", "vtc_cls")]
    got = _cells(rows, "vtc_cls", "llava-1.5-7b")
    assert Counter((m, t, b) for (m, t, _, b, _) in got.elements()) == Counter(
        (m, t, b) for m, t in budgets for b in VTC_CLS_BENCHMARKS + ("average",))
    references = Counter(r["model"] for r in rows if r["paper"] == "vtc_cls" and r["model"] != "llava-1.5-7b")
    assert references == {"blip2-14b": 6, "instructblip-14b": 5, "idefics-80b": 5, "qwen-vl-chat": 6}
    assert all(r["tokens"] is None and r["reduction_ratio"] is None for r in rows
               if r["paper"] == "vtc_cls" and r["model"] != "llava-1.5-7b")


def test_rows_are_well_formed(rows, efficiency):
    for row in rows + efficiency:
        assert row["source"] and row["printed"], row
        assert row["value"] == float(row["printed"].rstrip("%")), row
    keys = Counter((r["paper"], r["model"], r["method"], r["tokens"], r["benchmark"], r["metric"]) for r in rows)
    assert max(keys.values()) == 1
    ekeys = Counter((r["paper"], r["method"], r["attention"], r["tokens"], r["benchmark"], r["quantity"])
                    for r in efficiency)
    assert max(ekeys.values()) == 1
    assert Counter((r["paper"], r["model"]) for r in rows) == {
        ("fastervlm", "llava-1.5-7b"): 231, ("fastervlm", "llava-1.5-13b"): 176, ("fastervlm", "llava-next-7b"): 176,
        ("fastervlm", "video-llava-7b"): 120, ("vtc_cls", "llava-1.5-7b"): 90, ("vtc_cls", "blip2-14b"): 6,
        ("vtc_cls", "instructblip-14b"): 5, ("vtc_cls", "idefics-80b"): 5, ("vtc_cls", "qwen-vl-chat"): 6}
    assert Counter(r["paper"] for r in efficiency) == {"fastervlm": 65, "vtc_cls": 12}


def _one(rows: list[dict], **criteria) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in criteria.items())]
    assert len(found) == 1, criteria
    return found[0]


def test_anchor_values(rows, efficiency):
    def average(method: str, ratio: float) -> str:
        return _one(rows, paper="fastervlm", model="llava-1.5-7b", method=method, reduction_ratio=ratio,
                    benchmark="average")["printed"]

    assert average("fastervlm", 0.95) == "89.41%"
    assert average("fastv", 0.95) == "74.93%"
    assert average("fitprune", 0.95) == "67.64%"
    assert _one(rows, paper="fastervlm", model="llava-1.5-7b", method="none", benchmark="mme")["printed"] == "1506.47"
    assert _one(rows, paper="vtc_cls", model="llava-1.5-7b", method="vtc_cls", tokens=64,
                benchmark="average")["printed"] == "58.4"

    def eff(method: str, ratio: float, quantity: str, attention: str = "") -> float:
        return _one(efficiency, paper="fastervlm", method=method, reduction_ratio=ratio, quantity=quantity,
                    attention=attention)["value"]

    assert eff("none", 0.0, "flops") == 43.58
    assert eff("none", 0.0, "cuda_time") == 313.04
    assert eff("fastervlm", 0.95, "flops", "sdpa+flash") == 3.80
    assert eff("fastervlm", 0.95, "cuda_time", "sdpa") == 78.18
    assert eff("fastervlm", 0.95, "cuda_time", "flash") == 77.66


def test_efficiency_tables_have_exactly_the_printed_cells(efficiency):
    fastervlm = Counter((r["method"], r["attention"], r["tokens"], r["quantity"], r["unit"])
                        for r in efficiency if r["paper"] == "fastervlm")
    all_q = [("flops", "T"), ("kv_storage", "MB"), ("gpu_memory", "GB"), ("cuda_time", "ms"), ("accuracy", "%")]
    expected = Counter(("none", "", 2880, q, u) for q, u in all_q)
    for ratio in RATIOS:
        tokens = 5 * round(576 * (1 - ratio))
        expected.update(("fastv", "", tokens, q, u) for q, u in all_q)
        expected.update(("fastervlm", "sdpa+flash", tokens, q, u) for q, u in all_q[:3])
        expected.update(("fastervlm", a, tokens, q, u) for a in ("sdpa", "flash") for q, u in all_q[3:])
    assert fastervlm == expected
    assert all((r["model"], r["benchmark"]) == ("llava-next-7b", "pope") for r in efficiency if r["paper"] == "fastervlm")
    vtc = Counter((r["method"], r["tokens"], r["benchmark"], r["quantity"]) for r in efficiency if r["paper"] == "vtc_cls")
    assert vtc == Counter((m, t, b, q) for m, t in (("none", 576), ("vtc_cls", 128), ("vtc_cls", 64))
                          for b, q in (("gqa", "wall_time"), ("gqa", "accuracy"), ("pope", "wall_time"), ("pope", "f1")))


def test_vtc_cls_latency_table_repeats_the_performance_table(rows, efficiency):
    for row in (r for r in efficiency if r["paper"] == "vtc_cls" and r["quantity"] != "wall_time"):
        method = "none" if row["tokens"] == 576 else row["method"]
        assert _one(rows, paper="vtc_cls", model="llava-1.5-7b", method=method, tokens=row["tokens"],
                    benchmark=row["benchmark"])["printed"] == row["printed"]


def test_reference_rows_can_be_left_out(rows):
    pruning_rows = load_published(include_reference=False)
    assert len(rows) - len(pruning_rows) == 22
    assert all(r["tokens"] is not None and r["reduction_ratio"] is not None for r in pruning_rows)
