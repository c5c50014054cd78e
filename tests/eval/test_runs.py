"""Evaluation runs that survive every interruption and say clearly what they did: kills at any point,
Ctrl-C, arguments checked before anything is written, and one-line reports."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llava_patch import cli
from llava_patch.eval.minibench import build_minibench
from llava_patch.eval.runner import RunConfig, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def minibench(tmp_path_factory):
    return build_minibench(tmp_path_factory.mktemp("data") / "eval", images=4)


def _arguments(model, data, output, *extra):
    return ["--model", str(model), "--benchmark", "pope", "--data-root", str(data), "--output-dir", str(output),
            "--dtype", "float32", *extra]


def _eval(*arguments, **kwargs):
    return subprocess.run([sys.executable, "-m", "llava_patch.eval", *arguments], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, **kwargs)


KILL_AFTER_ANSWERS = """
import os, signal, sys
from llava_patch.eval import command, runner
runner._manifest = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)  # die right after answers.jsonl
sys.exit(command.main(sys.argv[1:]))
"""


def test_a_run_killed_after_its_answers_finishes_its_outputs_without_recomputing(tiny_original, minibench, tmp_path):
    output = tmp_path / "run"
    arguments = _arguments(tiny_original[0], minibench, output, "--method", "fastervlm", "--keep", "16", "--batch-size", "4")
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_ANSWERS, *arguments], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    assert (output / "answers.jsonl").exists() and not (output / "manifest.json").exists()
    answers = (output / "answers.jsonl").read_bytes()
    finished = _eval(*arguments)
    assert finished.returncode == 0, finished.stderr
    assert "torchvision" not in killed.stderr + finished.stderr  # the PIL fallback is chosen on purpose: no notice
    assert (output / "answers.jsonl").read_bytes() == answers
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["generated_tokens_this_session"] == 0 and manifest["questions"] == 12  # nothing recomputed
    assert "f1_mean" in json.loads((output / "metrics.json").read_text())
    again = _eval(*arguments)
    assert again.returncode == 0 and f"{output}: complete (answers.jsonl, manifest.json, metrics.json); nothing to do" in again.stdout
    assert not list(output.glob("*.tmp"))


def test_ctrl_c_says_how_far_the_run_got_in_one_line(tiny_original, tmp_path):
    # 120 questions: the interrupt lands long before the end (12 could all be answered in the 20 ms poll)
    many = build_minibench(tmp_path / "data", images=40)
    output = tmp_path / "run"
    arguments = _arguments(tiny_original[0], many, output, "--method", "vtc_cls", "--keep", "16", "--batch-size", "1")
    process = subprocess.Popen([sys.executable, "-m", "llava_patch.eval", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    shard = output / "shards" / "000-of-001.jsonl"
    deadline = time.monotonic() + 240
    while not (shard.exists() and shard.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    last = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(last) == 1 and "Traceback" not in stderr
    assert last[0].startswith("llava-patch eval: interrupted after ") and last[0].endswith(
        " of 120 questions; rerun the same command to resume")
    resumed = _eval(*arguments)
    assert resumed.returncode == 0, resumed.stderr
    assert len((output / "answers.jsonl").read_text().splitlines()) == 120


def test_a_failed_check_writes_nothing_and_the_fixed_command_runs(tiny_original, minibench, tmp_path, capsys):
    output = tmp_path / "run"
    good = _arguments(tiny_original[0], minibench, output, "--method", "fastervlm", "--keep", "8", "--limit", "2")
    cases = [
        (_arguments(tiny_original[0], tmp_path / "typo", output, "--method", "fastervlm", "--keep", "8"),
         "typo/pope/llava_pope_test.jsonl: missing"),
        (_arguments(tiny_original[0], minibench, output, "--method", "fastervlm", "--keep", "999"),
         "keep=999 is outside [1, 64]"),
        (_arguments(tmp_path / "no-such-model", minibench, output, "--method", "fastervlm", "--keep", "8"),
         "no-such-model: no such checkpoint directory"),
        (_arguments(tiny_original[0], minibench, output, "--method", "none", "--keep", "5"),
         "--method none keeps every token; it takes no --keep or --reduction-ratio"),
        (_arguments(tiny_original[0], minibench, output, "--method", "fastervlm"),
         "--method fastervlm needs a budget"),
        (_arguments(tiny_original[0], minibench, output, "--method", "fastervlm", "--keep", "8", "--batch-size", "0"),
         "--batch-size 0: must be a positive integer"),
        (_arguments(tiny_original[0], minibench, output, "--method", "fastervlm", "--keep", "8", "--limit", "0"),
         "--limit 0: at least one question of"),
    ]
    for arguments, message in cases:
        assert cli.main(["eval", *arguments]) == 2
        error = capsys.readouterr().err
        reported = [line for line in error.splitlines() if line.startswith("llava-patch")]
        assert len(reported) == 1 and message in reported[0] and "Traceback" not in error, error
        assert not output.exists()
    assert cli.main(["eval", *good]) == 0
    out = capsys.readouterr().out
    assert "pope f1_mean: " in out and "(2 questions); visual tokens per sample measured 8/8.0/8 (min/mean/max)" in out
    assert f"outputs in {output}" in out and '"weights_fingerprint"' not in out  # a summary, not the manifest


def test_an_empty_question_file_is_named(tiny_original, minibench, tmp_path, capsys):
    data = tmp_path / "eval"
    (data / "pope").mkdir(parents=True)
    (data / "pope" / "llava_pope_test.jsonl").write_text("")
    assert cli.main(["eval", *_arguments(tiny_original[0], data, tmp_path / "run", "--method", "none")]) == 2
    assert f"{data}/pope/llava_pope_test.jsonl: no questions" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_without_data_or_the_reverse_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CKPT", str(tmp_path))
    monkeypatch.delenv("DATA", raising=False)
    assert cli.main(["reproduce", "--output-root", str(tmp_path / "runs")]) == 2
    assert "CKPT/--model is set but DATA/--data-root is not" in capsys.readouterr().err
    monkeypatch.delenv("CKPT")
    monkeypatch.setenv("DATA", str(tmp_path))
    assert cli.main(["reproduce", "--output-root", str(tmp_path / "runs")]) == 2
    assert "DATA/--data-root is set but CKPT/--model is not" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_complete_run_reruns_as_nothing_to_do(tiny_original, minibench, tmp_path, capsys):
    config = RunConfig(model=str(tiny_original[0]), benchmark="pope", data_root=str(minibench),
                       output_dir=str(tmp_path / "run"), method="grid", keep=8, limit=2, dtype="float32")
    first = run(config)
    stamps = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "run").iterdir() if path.is_file()}
    assert run(config) == first
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "run").iterdir() if path.is_file()} == stamps
    assert capsys.readouterr().out.strip().endswith("nothing to do")
