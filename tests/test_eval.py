"""The evaluation runner end to end on a tiny original-format checkpoint and the mini benchmark."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llava_patch.eval import runner
from llava_patch.eval.minibench import build_minibench
from llava_patch.eval.runner import RunConfig, run
from llava_patch.loading import VLM


@pytest.fixture(scope="session")
def minibench(tmp_path_factory):
    return build_minibench(tmp_path_factory.mktemp("data") / "eval", images=4)


def _config(tiny_original, minibench, output, **overrides):
    settings = dict(model=str(tiny_original[0]), benchmark="pope", data_root=str(minibench), output_dir=str(output),
                    method="fastervlm", reduction_ratio=0.75, batch_size=4, dtype="float32")
    return RunConfig(**{**settings, **overrides})


def _answers(output):
    return [json.loads(line) for line in (Path(output) / "answers.jsonl").read_text().splitlines()]


def _texts(output):
    return [(row["question_id"], row["text"]) for row in _answers(output)]


def test_a_run_writes_llavas_answer_file_metrics_and_a_manifest(tiny_original, minibench, tmp_path):
    manifest = run(_config(tiny_original, minibench, tmp_path / "run"))
    answers = _answers(tmp_path / "run")
    assert len(answers) == 12 and [row["question_id"] for row in answers] == list(range(12))
    assert {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"} <= set(answers[0])
    assert answers[0]["prompt"].endswith("Answer the question using a single word or phrase.")
    assert manifest["measured_visual_tokens"] == {"min": 16, "mean": 16, "max": 16}  # 75% of 64
    assert manifest["method"] == "fastervlm" and manifest["requested_budget"]["reduction_ratio"] == 0.75
    assert manifest["weights_fingerprint"] and manifest["versions"]["transformers"].startswith("5.")
    assert list(manifest["data_files"].values())[0] == runner._sha256(Path(minibench) / "pope" / "llava_pope_test.jsonl")
    assert json.loads((tmp_path / "run" / "manifest.json").read_text()) == manifest
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["f1_mean"] <= 1.0 or 0.0 <= metrics["f1_mean"] <= 100.0


def test_batched_answers_equal_batch_of_one(tiny_original, minibench, tmp_path):
    run(_config(tiny_original, minibench, tmp_path / "b4", limit=6))
    run(_config(tiny_original, minibench, tmp_path / "b1", limit=6, batch_size=1))
    assert _texts(tmp_path / "b4") == _texts(tmp_path / "b1")


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_answers(tiny_original, minibench, tmp_path, monkeypatch):
    run(_config(tiny_original, minibench, tmp_path / "whole", batch_size=2))
    calls = {"n": 0}
    original = VLM.generate

    def crash_on_third_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VLM, "generate", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run(_config(tiny_original, minibench, tmp_path / "resumed", batch_size=2))
    monkeypatch.setattr(VLM, "generate", original)
    shard = tmp_path / "resumed" / "shards" / "000-of-001.jsonl"
    assert len(shard.read_text().splitlines()) == 4  # two whole batches survived
    with open(shard, "a") as file:  # and a write torn by the kill
        file.write('{"question_id": 4, "prompt": "Is th')
    run(_config(tiny_original, minibench, tmp_path / "resumed", batch_size=2))
    assert _answers(tmp_path / "resumed") == _answers(tmp_path / "whole")


def test_two_accelerate_processes_merge_to_the_single_process_answers(tiny_original, minibench, tmp_path):
    run(_config(tiny_original, minibench, tmp_path / "single", limit=6, batch_size=2))
    # `--multi_gpu` is accelerate's torchrun launcher; with no GPU the runner joins over gloo on the CPU.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "-m", "llava_patch.eval",
               "--model", str(tiny_original[0]), "--benchmark", "pope", "--data-root", str(minibench),
               "--output-dir", str(tmp_path / "sharded"), "--method", "fastervlm", "--reduction-ratio", "0.75",
               "--batch-size", "2", "--limit", "6", "--dtype", "float32"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert sorted(path.name for path in (tmp_path / "sharded" / "shards").iterdir()) == ["000-of-002.jsonl", "001-of-002.jsonl"]
    assert _texts(tmp_path / "sharded") == _texts(tmp_path / "single")


def test_a_token_count_off_budget_stops_the_run(tiny_original, minibench, tmp_path, monkeypatch):
    from llava_patch.patch import PatchHandle

    monkeypatch.setattr(PatchHandle, "expected_visual_tokens", lambda self, frames=None: 58)
    with pytest.raises(RuntimeError, match=r"\[16, 16, 16, 16\] visual tokens reached the LLM, but fastervlm .* gives 58"):
        run(_config(tiny_original, minibench, tmp_path / "off"))
    assert not (tmp_path / "off" / "answers.jsonl").exists()


def test_bad_inputs_are_named_and_results_are_never_overwritten(tiny_original, minibench, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(minibench, broken)
    (broken / "pope" / "val2014" / "mini_0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="mini_0001.jpg: no such image file"):
        run(_config(tiny_original, broken, tmp_path / "missing-image"))
    questions = broken / "pope" / "llava_pope_test.jsonl"
    lines = questions.read_text().splitlines()
    questions.write_text("\n".join(lines[:2] + ['{"question_id": 2, "image": '] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match="llava_pope_test.jsonl:3: malformed JSON line"):
        run(_config(tiny_original, broken, tmp_path / "malformed"))
    with pytest.raises(ValueError, match="unknown benchmark 'popes'; known: vqav2, gqa"):
        run(_config(tiny_original, broken, tmp_path / "unknown", benchmark="popes"))
    with pytest.raises(FileNotFoundError, match="textvqa/llava_textvqa_val_v051_ocr.jsonl: missing; expected LLaVA's layout"):
        run(_config(tiny_original, broken, tmp_path / "layout", benchmark="textvqa"))
    done = tmp_path / "done"
    run(_config(tiny_original, minibench, done, limit=2))
    before = (done / "answers.jsonl").read_bytes()
    with pytest.raises(FileExistsError, match="this run is complete; choose a new --output-dir"):
        run(_config(tiny_original, minibench, done, limit=2))
    with pytest.raises(ValueError, match="holds a run with other settings"):
        (done / "answers.jsonl").rename(done / "kept.jsonl")
        run(_config(tiny_original, minibench, done, limit=2, method="vtc_cls"))
    assert (done / "kept.jsonl").read_bytes() == before


def test_the_bash_script_runs_one_evaluation_through_accelerate(tiny_original, minibench, tmp_path):
    root = Path(__file__).resolve().parent.parent
    environment = {"CKPT": str(tiny_original[0]), "DATA": str(minibench), "RUNS": str(tmp_path / "runs"),
                   "PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)}
    finished = subprocess.run(["bash", str(root / "experiments" / "v1_5" / "pope.sh"), "vtc_cls", "16",
                               "--limit", "2", "--dtype", "float32"], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "v1_5" / "llava-v1.5-tiny" / "pope" / "vtc_cls-16" / "manifest.json").read_text())
    assert manifest["measured_visual_tokens"]["max"] == 16 and manifest["questions"] == 2
