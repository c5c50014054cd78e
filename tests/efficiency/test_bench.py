"""The efficiency benchmark: timing discipline, the reference approach, and an end-to-end tiny run."""

import json
import time

import pytest
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


def test_the_benchmark_runs_end_to_end_and_writes_well_formed_results(tmp_path, capsys):
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4)
    paths = bench.run(model="tiny", device="cpu", batch_sizes=[1, 2], repeats=1, warmup=0, new_tokens=2, text_tokens=10,
                      throughput_prompts=2, output=tmp_path / "out", tower_sizes=tower)
    progress = capsys.readouterr()  # a bar on stderr naming each step; nothing on stdout
    assert progress.out == ""
    steps = 2 * (1 + 5 * 3) + 3  # the settings, the vision tower, the throughput, the tower truncation
    for step in ("vision tower, batch 1", "none, batch 1", "fastervlm 95% pruned, batch 2", "fastv 75% pruned, batch 2",
                 "throughput, 2 prompts", "tower truncation", f"{steps}/{steps}"):
        assert step in progress.err, step
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["settings"]) == 2 * (1 + 5 * 3)
    assert {row["visual_tokens"] for row in saved["settings"] if row["reduction_ratio"] == 0.95
            and row["method"] in ("fastervlm", "vtc_cls", "fastv")} == {29}
    fastv = [row for row in saved["settings"] if row["method"] == "fastv" and row["batch"] == 1]
    none = next(row for row in saved["settings"] if row["method"] == "none" and row["batch"] == 1)
    assert all(row["kv_cache_bytes"] < none["kv_cache_bytes"] for row in fastv)
    assert none["prefill_speedup"] == none["cost_model_ratio"] == 1.0
    assert saved["vision"]["reference_attention_map_bytes"] > 1000 * saved["vision"]["ours_extra_bytes_per_image"]
    assert saved["throughput"]["prompts"] == 2 and saved["throughput"]["ours_questions_per_s"] > 0
    truncation = saved["tower_truncation"]
    assert set(truncation["seconds"]) == {"transformers_tower_hidden_states", "select_full_tower", "select_stop_at_layer_2"}
    assert truncation["saving_from_stopping"] < 1 and "4 layers, width 32" in truncation["what"]
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| fastervlm | 95% | 2 | 29 |" in markdown and "## Stopping the full-size tower at the select layer" in markdown
    assert all(path.exists() and path.stat().st_size > 0 for path in paths)
    with pytest.raises(FileExistsError, match="out exists"):
        bench.run(**{**bench.defaults(gpu=False), "output": tmp_path / "out"})


def test_results_are_written_from_one_set_of_rows_without_touching_the_result(tmp_path):
    settings = [{"method": method, "reduction_ratio": ratio, "batch": 1, "visual_tokens": tokens, "prefill_s": seconds,
                 "ttft_s": seconds, "generate_s": 2 * seconds, "decode_tokens_per_s": 10.0, "kv_cache_bytes": 2**20, "peak_bytes": None,
                 "model_prefill_macs": macs}
                for method, ratio, tokens, seconds, macs in (("none", 0.0, 576, 4.0, 400), ("fastervlm", 0.75, 144, 2.0, 100),
                                                             ("fastv", 0.75, 144, 1.0, 200))]
    result = {"model": "tiny", "device": "cpu", "dtype": "torch.float32", "timing": "median", "repeats": 1, "warmup": 0,
              "text_tokens": 10, "new_tokens": 2, "workload": "prompts of 10 text tokens", "settings": settings,
              "vision": {"transformers_tower_s": 1.0, "ours_full_tower_s": 1.0, "ours_stop_at_select_layer_s": 0.9,
                         "reference_eager_all_maps_s": 2.0, "selection_overhead_fraction": 0.0,
                         "stop_at_select_layer_saving_fraction": 0.1, "reference_attention_map_bytes": 2**20,
                         "ours_extra_bytes_per_image": 4},
              "throughput": {"prompts": 2, "new_tokens": 2, "batch": 1, "ours_questions_per_s": 1.0,
                             "reference_questions_per_s": 0.5}}
    before = json.dumps(result)
    bench.write_results(result, tmp_path / "out")
    assert json.dumps(result) == before
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(row["prefill_speedup"], row["cost_model_ratio"]) for row in saved["settings"]] == [(1.0, 1.0), (2.0, 4.0), (4.0, 2.0)]
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| fastervlm | 75% | 1 | 144 | 144 | 2.0000 | 2.0000 | 4.0000 | 10.0 | 1.0 | 2.00× | 2.00× | 4.00× | 50% |" in markdown
    assert "| fastv | 75% | 1 | 144 | 144 | 1.0000 | 1.0000 | 2.0000 | 10.0 | 1.0 | 4.00× | 4.00× | 2.00× | 200% |" in markdown


def test_the_toy_run_times_each_pruning_method_at_95_percent_on_easy_vqa_beside_the_unpruned_model(tiny_llava_dir, tmp_path):
    paths = bench.toy_speedups(tmp_path / "toy", model=tiny_llava_dir, batch_sizes=(1, 2), repeats=1, warmup=0,
                               new_tokens=2)
    saved = json.loads((tmp_path / "toy" / "results.json").read_text())
    assert [(row["batch"], row["method"], row["reduction_ratio"], row["visual_tokens"]) for row in saved["settings"]] == [
        (batch, method, ratio, tokens) for batch in (1, 2)
        for method, ratio, tokens in (("none", 0.0, 64), ("fastervlm", 0.95, 3), ("vtc_cls", 0.95, 3), ("fastv", 0.95, 3),
                                     ("sparsevlm", 0.95, 3), ("fitprune", 0.95, 1))]
    assert all(row["prefill_speedup"] == row["generate_speedup"] == 1.0 for row in saved["settings"] if row["method"] == "none")
    assert all(row["prefill_s"] > 0 and row["generate_s"] > 0 for row in saved["settings"])
    # the LLM-stage rows: costed on the measured per-layer counts; SparseVLM's as predicted for scale 0 and its bias
    sparsevlm = next(row for row in saved["settings"] if row["method"] == "sparsevlm")
    assert sparsevlm["options"] == {"scale": 0.0, "bias": 2.0}
    assert sparsevlm["layer_visual_tokens"] == bench.sparsevlm_predicted_schedule(64, 4, 2) == [64, 4, 3, 3]
    assert sparsevlm["equivalent_visual_tokens"] == 3.25  # SparseVLM's count, the nearest to round(64·0.05) = 3
    fitprune = next(row for row in saved["settings"] if row["method"] == "fitprune")
    assert fitprune["layer_visual_tokens"] == [64, 1, 1, 1] and fitprune["options"]["recipe"]["reached"] is False
    assert "not the authors' recipe" in fitprune["options"]["recipe"]["algorithm"]
    assert [question["image"] for question in saved["questions"]] == ["0.png", "1.png"]  # the first two test images
    assert all(question["question"].endswith("single word or phrase.") for question in saved["questions"])
    assert saved["threads"] == torch.get_num_threads() and f"{saved['threads']} threads" in saved["device"]
    assert len(saved["load_average"]["before"]) == len(saved["load_average"]["after"]) == 3
    markdown = (tmp_path / "toy" / "results.md").read_text()
    assert "| fastervlm | 95% | 2 | 3 |" in markdown and "System load average" in markdown
    assert "## Vision tower" not in markdown and all(path.stat().st_size > 0 for path in paths)
    with pytest.raises(FileExistsError, match="toy exists"):
        bench.toy_speedups(tmp_path / "toy", model=tiny_llava_dir)


def test_the_defaults_are_the_arguments_of_run():
    import inspect

    parameters = set(inspect.signature(bench.run).parameters) - {"output", "tower_sizes"}
    for gpu in (False, True):
        assert set(bench.defaults(gpu)) == parameters
    assert bench.defaults(gpu=False)["model"] == "cpu-small" and bench.defaults(gpu=True)["batch_sizes"] == [1, 8, 32]
    assert bench.measured_methods() == ["none", "fastervlm", "vtc_cls", "fastv", "sparsevlm", "fitprune"]


def test_the_fitprune_stand_in_recipe_is_the_mildest_geometric_one_that_reaches_the_target():
    from llava_patch.efficiency.cost import MODELS

    llm = MODELS["llava-1.5-7b"].llm
    for ratio in (0.75, 0.9, 0.95):
        recipe = bench.fitprune_bench_recipe(llm, 576, ratio)
        assert recipe.fitting["reached"] and recipe.flops_reduction() >= ratio and recipe.layers == 32
        assert recipe.delete[-1] == 0 and recipe.flops_reduction_target == ratio
        q = recipe.fitting["q"]
        milder = [max(1, round(576 * (q + 1e-3) ** (layer + 1))) for layer in range(31)]
        assert recipe.schedule()[1:] == [max(1, round(576 * q ** (layer + 1))) for layer in range(31)]
        assert bench.Recipe(delete=[a - b for a, b in zip([576] + milder, milder)] + [0], flops_reduction_target=ratio,
                            visual_tokens=576, model=recipe.model).flops_reduction() < ratio
    assert round(bench.fitprune_bench_recipe(llm, 576, 0.9).layer_mean_visual_tokens(), 1) == 71.5  # authors' 0.9: 72.8
    shallow = bench.fitprune_bench_recipe(bench.TransformerSpec(4, 64, 128, 4, 4, 3), 576, 0.9)
    assert not shallow.fitting["reached"] and shallow.schedule() == [576, 1, 1, 1]  # out of reach: layer 0 sees all


def test_the_sparsevlm_bias_aims_at_the_ratios_layer_mean():
    from llava_patch.registry import create_method

    count = create_method("sparsevlm", {}).equivalent_visual_tokens
    assert bench.sparsevlm_predicted_schedule(576, 32, 20)[:8] == [576, 576, 576, 37, 37, 37, 37, 21]
    for layers, ratio, bias, mean in ((8, 0.75, 140, 144.2), (8, 0.95, 24, 29.0), (32, 0.9, 20, 57.7)):
        assert bench.sparsevlm_bench_bias(576, layers, ratio) == bias
        assert round(count(bench.sparsevlm_predicted_schedule(576, layers, bias)), 1) == mean
    # 32 layers: layers 0-2 see all 576, so a layer mean of 29 (95 %) is out of reach; bias 0 comes nearest
    assert bench.sparsevlm_bench_bias(576, 32, 0.95) == 0
