"""The efficiency benchmark: timing discipline, the reference approach, and an end-to-end tiny run."""

import json
import time

import torch

from llava_patch.efficiency import bench


def test_measure_excludes_warm_up_calls():
    calls = []

    def slow_then_fast():
        calls.append(1)
        time.sleep(0.05 if len(calls) <= 2 else 0.001)

    times = bench.measure(slow_then_fast, "cpu", warmup=2, repeats=4)
    assert len(calls) == 6 and len(times) == 4 and max(times) < 0.03


def test_measure_synchronises_around_cuda_events(monkeypatch):
    log = []

    class Event:
        def __init__(self, enable_timing):
            self.at = None

        def record(self):
            log.append("record")
            self.at = len(log)

        def elapsed_time(self, other):
            return 1000.0 * (other.at - self.at)  # milliseconds

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: log.append("sync"))
    times = bench.measure(lambda: log.append("call"), "cuda", warmup=1, repeats=2)
    assert log == ["call"] + ["sync", "record", "call", "record", "sync"] * 2
    assert times == [2.0, 2.0]  # event to event, in seconds


def test_the_reference_approach_materialises_every_layers_attention_maps():
    model = bench.build_model("tiny", torch.float32, "cpu")
    pixels = torch.randn(1, 3, 336, 336)
    features, map_bytes = bench.reference_vision(model, pixels)
    assert map_bytes == 4 * 4 * 577 * 577 * 4  # layers × heads × 577² float32
    assert features.shape == (1, 577, 32)
    assert model.model.vision_tower.config._attn_implementation == "sdpa"  # restored


def test_the_benchmark_runs_end_to_end_and_writes_well_formed_results(tmp_path):
    result = bench.run_benchmark("tiny", "cpu", torch.float32, batch_sizes=[1, 2], repeats=1, warmup=0,
                                 new_tokens=2, text_tokens=10, throughput_prompts=2)
    paths = bench.write_results(result, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["settings"]) == 2 * (1 + 3 * 3)
    assert {row["visual_tokens"] for row in saved["settings"] if row["reduction_ratio"] == 0.95} == {29}
    fastv = [row for row in saved["settings"] if row["method"] == "fastv" and row["batch"] == 1]
    none = next(row for row in saved["settings"] if row["method"] == "none" and row["batch"] == 1)
    assert all(row["kv_cache_bytes"] < none["kv_cache_bytes"] for row in fastv)
    assert saved["vision"]["reference_attention_map_bytes"] > 1000 * saved["vision"]["ours_extra_bytes_per_image"]
    assert saved["throughput"]["prompts"] == 2 and saved["throughput"]["ours_questions_per_s"] > 0
    assert "| fastervlm | 95% | 2 | 29 |" in (tmp_path / "out" / "results.md").read_text()
    assert all(path.exists() and path.stat().st_size > 0 for path in paths)
