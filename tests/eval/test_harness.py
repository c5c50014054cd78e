"""The lmms-eval plugin (llava_patch/eval/harness.py) through the real `lmms-eval` CLI: a tiny checkpoint
in both layouts, a local 5-question POPE-format task, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llava_patch.eval.benchmarks import get_benchmark
from llava_patch.eval.harness import parse_model_args
from llava_patch.eval.minibench import build_minibench

pytest.importorskip("lmms_eval")

LMMS_EVAL = Path(sys.executable).with_name("lmms-eval")
TASK = "llava_patch_mini_pope"

TASK_YAML = f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: questions.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  until: ["\\n"]
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 0.0
"""

TASK_UTILS = '''from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"] + "\\nAnswer the question using a single word or phrase."


def process_results(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"])}
'''


@pytest.fixture(scope="module")
def mini_pope_task(tmp_path_factory):
    """A 5-question POPE-format task (images from the mini benchmark) as lmms-eval task files."""
    root = tmp_path_factory.mktemp("lmms-task")
    data = build_minibench(root / "data", images=2)
    pope = get_benchmark("pope")
    labels = {}
    for split in ("adversarial", "popular", "random"):
        for line in pope.file(data, "labels", split=split).read_text().splitlines():
            row = json.loads(line)
            labels[row["question_id"]] = row
    rows = [{"question_id": qid, "image": str(pope.image_path(data, row["image"])), "question": row["text"],
             "answer": row["label"]} for qid, row in sorted(labels.items())[:5]]
    task = root / "task"
    task.mkdir()
    (task / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (task / f"{TASK}.yaml").write_text(TASK_YAML)
    (task / "utils.py").write_text(TASK_UTILS)
    return task


def _run(model: str, model_args: str, task: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_DATASETS_CACHE": str(output / "hf-datasets"), "TOKENIZERS_PARALLELISM": "false"}
    command = [str(LMMS_EVAL), "--model", model, "--model_args", model_args, "--include_path", str(task),
               "--tasks", TASK, "--batch_size", "2", "--device", "cpu", "--output_path", str(output),
               "--verbosity", "DEBUG", *extra]
    # Run outside the source tree: a stale llava_patch.egg-info there would hide the installed entry point.
    return subprocess.run(command, cwd=output.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("model, extra, interface", [("llava_patch_hf", (), "chat"),  # lmms-eval's default
                                                    ("llava_patch_hf", ("--force_simple",), "simple"),
                                                    ("llava_patch", (), "simple")])
def test_lmms_eval_cli_runs_the_patched_model(model, extra, interface, tiny_original, mini_pope_task, tmp_path):
    original, converted = tiny_original
    checkpoint = converted if model == "llava_patch_hf" else original
    output = tmp_path / "out"
    done = _run(model, f"pretrained={checkpoint},method=fastervlm,keep=8", mini_pope_task, output, *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = list(output.rglob("*results*.json"))
    assert results, f"no results file under {output}: {list(output.rglob('*'))}"
    reported = json.loads(results[0].read_text())
    metrics = reported["results"][TASK]
    assert any(key.startswith("exact_match") for key in metrics), metrics
    assert reported["throughput"]["avg_visual_tokens_per_sample"] == 8  # the measured count, in lmms-eval's results
    tokens = json.loads((output / f"visual_tokens_{model}.json").read_text())
    assert tokens["samples"] == 5 and tokens["per_sample"] == [8] * 5
    assert tokens["measured_visual_tokens"] == {"min": 8, "mean": 8.0, "max": 8}
    assert tokens["expected_visual_tokens"] == 8 and tokens["interface"] == interface


def test_lmms_eval_cli_fails_on_a_wrong_budget(tiny_original, mini_pope_task, tmp_path):
    _, converted = tiny_original
    done = _run("llava_patch_hf", f"pretrained={converted},method=fastervlm,keep=999", mini_pope_task, tmp_path / "out")
    assert done.returncode != 0
    assert "keep=999 is outside" in done.stdout + done.stderr
    assert not list((tmp_path / "out").rglob("*results*.json"))


def test_model_args_parse_as_json_where_they_parse():
    assert parse_model_args('pretrained=a/b,keep=8,reduction_ratio=0.95,ensemble=sum,flag=true,x={"a":1,"b":2}') == {
        "pretrained": "a/b", "keep": 8, "reduction_ratio": 0.95, "ensemble": "sum", "flag": True, "x": {"a": 1, "b": 2}}


def test_the_entry_point_names_both_models_without_importing_lmms_eval_models():
    code = ("import sys; from llava_patch.eval import lmms_eval_models; m = lmms_eval_models(); "
            "print(sorted(x.model_id for x in m)); print('lmms_eval.api.model' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['llava_patch', 'llava_patch_hf']"
    assert out[1] == "False False"


def test_a_token_count_off_the_budget_raises_instead_of_scoring():
    from types import SimpleNamespace

    from llava_patch.eval import harness

    model = object.__new__(harness.LlavaPatchHF)
    model.handle, model.expected, model.visual_tokens = SimpleNamespace(last_visual_tokens=[8, 576]), 8, []
    model.settings = {"method": "fastervlm"}
    request = SimpleNamespace(args=("q", {}, None, 3, TASK, "test"))
    with pytest.raises(RuntimeError, match="refusing to report"):
        model._check_tokens([(0, request, None), (1, request, None)])
    assert harness.LlavaPatchHF._truncate("yes\nno", ["\n"]) == "yes"
