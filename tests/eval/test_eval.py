"""The evaluation runner end to end on a tiny original-format checkpoint and the mini benchmark."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llava_patch.eval import provenance
from llava_patch.eval.minibench import build_minibench
from llava_patch.eval.runner import RunConfig, run
from llava_patch.models.loading import VLM


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
    assert list(manifest["data_files"].values())[0] == provenance.sha256(Path(minibench) / "pope" / "llava_pope_test.jsonl")
    assert manifest["paper_model"] is None  # a tiny model is none of the papers' checkpoints
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
    with pytest.raises(ValueError, match="llava_pope_test.jsonl, line 3: malformed JSON"):
        run(_config(tiny_original, broken, tmp_path / "malformed"))
    with pytest.raises(ValueError, match="unknown benchmark 'popes'; known: vqav2, gqa"):
        run(_config(tiny_original, broken, tmp_path / "unknown", benchmark="popes"))
    with pytest.raises(FileNotFoundError, match="textvqa/llava_textvqa_val_v051_ocr.jsonl: missing; expected LLaVA's layout"):
        run(_config(tiny_original, broken, tmp_path / "layout", benchmark="textvqa"))
    done = tmp_path / "done"
    run(_config(tiny_original, minibench, done, limit=2))
    before = (done / "answers.jsonl").read_bytes()
    run(_config(tiny_original, minibench, done, limit=2))  # the same settings again: complete, nothing to do
    assert (done / "answers.jsonl").read_bytes() == before
    with pytest.raises(ValueError, match="holds a run with other settings"):
        (done / "answers.jsonl").rename(done / "kept.jsonl")
        run(_config(tiny_original, minibench, done, limit=2, method="vtc_cls"))
    assert (done / "kept.jsonl").read_bytes() == before


def test_the_bash_script_runs_one_evaluation(tiny_original, minibench, tmp_path):
    root = Path(__file__).resolve().parents[2]
    environment = {"CKPT": str(tiny_original[0]), "DATA": str(minibench), "RUNS": str(tmp_path / "runs"),
                   "PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)}
    finished = subprocess.run(["bash", str(root / "experiments" / "v1_5" / "pope.sh"), "vtc_cls", "16",
                               "--limit", "2", "--dtype", "float32"], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "v1_5" / "llava-v1.5-tiny" / "pope" / "vtc_cls-16" / "manifest.json").read_text())
    assert manifest["measured_visual_tokens"]["max"] == 16 and manifest["questions"] == 2


def _write_video(path, frames=10, size=56):
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            pixels = np.full((size, size, 3), (25 * index) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_qa_runs_with_the_judge_over_http(tiny_video_dir, tmp_path, server):
    qa = tmp_path / "eval" / "GPT_Zero_Shot_QA" / "MSVD_Zero_Shot_QA"
    (qa / "videos").mkdir(parents=True)
    questions, answers = [], []
    for index in range(3):
        _write_video(qa / "videos" / f"clip{index}.mp4")
        questions.append({"video_name": f"clip{index}", "question_id": f"v_{index}", "question": f"what happens {index}?"})
        answers.append({"question_id": f"v_{index}", "answer": "dog", "type": 3})
    (qa / "test_q.json").write_text(json.dumps(questions))
    (qa / "test_a.json").write_text(json.dumps(answers))
    config = RunConfig(model=str(tiny_video_dir), benchmark="msvd", data_root=str(tmp_path / "eval"), backend="hf",
                       output_dir=str(tmp_path / "run"), method="fastervlm", keep=6, batch_size=2, dtype="float32")
    manifest = run(config)
    assert manifest["measured_visual_tokens"] == {"min": 48, "mean": 48, "max": 48}  # 8 frames × 6
    rows = _answers(tmp_path / "run")
    assert [row["answer"] for row in rows] == ["dog"] * 3 and [row["question_id"] for row in rows] == ["v_0", "v_1", "v_2"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["judged"] == 3 and metrics["accuracy"] == 0.0 and len(server.requests) == 3  # the server says "no"
    from llava_patch.eval.runner import score_answers

    assert score_answers("msvd", tmp_path / "run" / "answers.jsonl", tmp_path / "eval",
                         cache=tmp_path / "run" / "judge_cache.jsonl")["judged"] == 3
    assert len(server.requests) == 3  # a rescore is answered from the cache


def test_science_qa_and_mmbench_prompts_follow_llavas_entry_points(tmp_path):
    import base64
    import io

    from PIL import Image

    from llava_patch.eval.benchmarks import OPTION_SUFFIX, get_benchmark

    sqa = tmp_path / "scienceqa"
    sqa.mkdir()
    (sqa / "llava_test_CQM-A.json").write_text(json.dumps([
        {"id": "7", "image": "7/image.png", "conversations": [{"from": "human", "value": "<image>\nWhich is bigger?\nA. ant\nB. cow"}]},
        {"id": "9", "conversations": [{"from": "human", "value": "Which is a metal?\nA. iron\nB. wood"}]},
    ]))
    image_question, text_question = get_benchmark("sqa").questions(tmp_path)
    assert image_question.text == "Which is bigger?\nA. ant\nB. cow\n" + OPTION_SUFFIX and image_question.image == "7/image.png"
    assert image_question.record["prompt"] == "<image>\n" + image_question.text
    assert text_question.image is None and text_question.text == "Which is a metal?\nA. iron\nB. wood\n" + OPTION_SUFFIX
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    mmbench = tmp_path / "mmbench_cn"
    mmbench.mkdir()
    header = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\n"
    rows = [f"3\t哪个是红色?\tnan\t苹果\t香蕉\tnan\tnan\tA\tcolor\t{base64.b64encode(buffer.getvalue()).decode()}\n"]
    (mmbench / "mmbench_dev_cn_20231003.tsv").write_text(header + "".join(rows))
    (question,) = get_benchmark("mmbench_cn").questions(tmp_path)
    assert question.text == "哪个是红色?\nA. 苹果\nB. 香蕉\n请直接回答选项字母。"
    assert question.record["options"] == ["苹果", "香蕉"] and question.image.size == (8, 8)


def test_the_sweep_writes_its_table_and_the_same_figure_twice(tiny_original, minibench, tmp_path):
    from llava_patch.eval.sweep import sweep

    for attempt in ("first", "second"):
        rows = sweep(str(tiny_original[0]), Path(minibench), tmp_path / attempt, ["pope"], methods=["none", "fastervlm"],
                     ratios=[0.9], dtype="float32", limit=3)
    assert [(row["method"], row["reduction_ratio"], row["visual_tokens_mean"]) for row in rows] == [
        ("none", 0.0, 64), ("fastervlm", 0.9, 6), ("no image", 1.0, 0.0)]
    assert all(row["ci95_low"] <= row["value"] <= row["ci95_high"] for row in rows)
    assert rows[0]["percent_of_unpruned"] == 100.0
    assert (tmp_path / "second" / "results.md").read_text().count("| pope |") == 3
    assert (tmp_path / "first" / "retention.png").read_bytes() == (tmp_path / "second" / "retention.png").read_bytes()


def test_mmvet_is_graded_by_the_gpt_grader_when_a_key_is_set(tmp_path, server):
    from llava_patch.eval.runner import score_answers

    (tmp_path / "mm-vet").mkdir()
    (tmp_path / "mm-vet" / "mm-vet.json").write_text(json.dumps({
        "v1_0": {"question": "What is 2+2?", "answer": "4", "imagename": "v1_0.png"},
        "v1_1": {"question": "Colour?", "answer": "red<OR>crimson", "imagename": "v1_1.png"}}))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": i, "prompt": q, "text": t}) + "\n"
                               for i, q, t in [(0, "What is 2+2?", "4"), (1, "Colour?", "blue")]))
    server.replies = {"blue": "0.0", "4": "1.0"}
    metrics = score_answers("mmvet", answers, tmp_path)
    assert metrics["score"] == 50.0 and len(server.requests) == 2


def test_the_score_command_prints_metrics_or_writes_a_submission(tiny_original, minibench, tmp_path, capsys):
    from llava_patch import cli

    run(_config(tiny_original, minibench, tmp_path / "run", limit=3))
    capsys.readouterr()
    score = ["score", "pope", "--answers", str(tmp_path / "run" / "answers.jsonl"), "--data-root", str(minibench)]
    assert cli.main(score) == 2  # 3 of 12 questions answered
    assert "9 of 12 questions have no answer" in capsys.readouterr().err
    assert cli.main([*score, "--allow-partial"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert "f1_mean" in metrics and metrics["n_missing"] == 9
    (tmp_path / "vqav2").mkdir()
    questions = [{"question_id": i, "image": "x.jpg", "text": "q"} for i in range(3)]
    (tmp_path / "vqav2" / "llava_vqav2_mscoco_test2015.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    answers = tmp_path / "vqav2-answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": i, "prompt": "q", "text": "Two."}) + "\n" for i in range(3)))
    assert cli.main(["score", "vqav2", "--answers", str(answers), "--data-root", str(tmp_path), "--submission",
                     str(tmp_path / "upload.json")]) == 0
    assert json.loads((tmp_path / "upload.json").read_text())[0] == {"question_id": 0, "answer": "2"}
    assert cli.main(["score", "vqav2", "--answers", str(answers), "--data-root", str(tmp_path)]) == 2


def test_greedy_near_ties_are_recorded_per_answer_and_counted(tiny_original, minibench, tmp_path):
    import torch

    from llava_patch.models.loading import GreedyMargins

    margins = GreedyMargins(eos_token_id=2)
    margins(torch.tensor([[5], [6]]), torch.tensor([[3.0, 1.0, 0.0], [1.0, 0.99, 0.0]]))
    margins(torch.tensor([[5, 2], [6, 7]]), torch.tensor([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0]]))  # row 0 ended: ignored
    assert torch.allclose(margins.smallest, torch.tensor([2.0, 0.01]))
    manifest = run(_config(tiny_original, minibench, tmp_path / "run", limit=4))
    recorded = [row["metadata"]["min_logit_margin"] for row in _answers(tmp_path / "run")]
    assert all(value >= 0 for value in recorded)
    assert manifest["greedy_near_ties"]["count"] == sum(value < 0.05 for value in recorded)


def test_a_no_image_run_asks_the_same_questions_without_the_image(tiny_original, minibench, tmp_path):
    manifest = run(_config(tiny_original, minibench, tmp_path / "text", method="none", reduction_ratio=None,
                           limit=4, no_image=True))
    assert manifest["no_image"] is True and manifest["measured_visual_tokens"] is None
    assert all(row["metadata"]["visual_tokens"] == 0 for row in _answers(tmp_path / "text"))
    from llava_patch.eval.benchmarks import get_benchmark
    from llava_patch.models.loading import load_model

    vlm = load_model(str(tiny_original[0]), backend="llava", dtype=torch.float32)
    questions = get_benchmark("pope").questions(minibench)[:4]
    expected = vlm.generate(None, [question.text for question in questions], max_new_tokens=128)
    assert [text for _, text in _texts(tmp_path / "text")] == expected


def test_a_no_image_run_takes_no_pruning_method(tiny_original, minibench, tmp_path):
    with pytest.raises(ValueError, match="--no-image asks without the image; it runs with --method none"):
        run(_config(tiny_original, minibench, tmp_path / "bad", no_image=True))
    assert not (tmp_path / "bad").exists()


def test_an_in_llm_run_records_both_counts_and_the_recipe_file_it_used(tiny_original, minibench, tmp_path):
    from llava_patch.fitprune_recipe import Recipe

    recipe = Recipe(delete=[9, 0, 12, 5], flops_reduction_target=0.25, visual_tokens=64).save(tmp_path / "recipe.json")
    manifest = run(_config(tiny_original, minibench, tmp_path / "run", method="fitprune", reduction_ratio=0.25,
                           options={"recipe": str(recipe)}, limit=4))
    assert manifest["option_files"] == {str(recipe): provenance.sha256(recipe)}
    assert manifest["measured_visual_tokens"] == {"min": 43, "mean": 43, "max": 43}  # 64 − 9 − 12 (none after the last layer)
    assert manifest["measured_equivalent_visual_tokens"]["mean"] == (64 + 55 + 55 + 43) / 4
    assert all(row["metadata"]["equivalent_visual_tokens"] == 54.25 for row in _answers(tmp_path / "run"))
