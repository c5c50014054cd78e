"""`llava-patch demo` runs every method end to end and never overwrites an existing file; by default on the
toy LLaVA, an easy-VQA test image and its question."""

import json

from llava_patch import cli, method_info, methods
from llava_patch.eval import demo
from llava_patch.eval.scoring.gqa import normalize_prediction


def test_demo_runs_every_method_and_reports_the_tokens_that_reached_the_llm(tiny_llava_dir, tmp_path, capsys):
    output = tmp_path / "rows.jsonl"
    assert cli.main(["demo", "--model", str(tiny_llava_dir), "--max-new-tokens", "2", "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["method"], r["visual_tokens_to_llm"]) for r in rows[:4]] == [
        ("none", 64), ("fastervlm", 16), ("fastervlm", 6), ("fastervlm", 3)]
    assert {r["method"] for r in rows} == {"none", "fastervlm", "vtc_cls", "fastv", "random", "grid"}
    printed = capsys.readouterr().out
    assert "wall time of one call after one warm-up call" in printed and "easy-VQA test split" in printed


def test_demo_refuses_to_overwrite_and_names_bad_files(tiny_llava_dir, tmp_path, capsys):
    existing = tmp_path / "rows.jsonl"
    existing.write_text("keep me\n")
    assert cli.main(["demo", "--model", str(tiny_llava_dir), "--output", str(existing)]) == 2
    assert "--output" in capsys.readouterr().err and existing.read_text() == "keep me\n"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert cli.main(["demo", "--model", str(tiny_llava_dir), "--image", str(broken)]) == 2
    assert "broken.png: cannot be read as an image" in capsys.readouterr().err
    assert cli.main(["demo", "--model", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_a_user_image_gets_the_free_question_and_the_default_image_its_own(tmp_path):
    image = tmp_path / "photo.png"
    asked = demo.demo_input(None, None)
    asked.image.save(image)
    theirs = demo.demo_input(str(image), None)
    assert (theirs.question, theirs.expected, theirs.image_source) == (demo.FREE_QUESTION, None, str(image))
    assert "easy-VQA test split" in asked.image_source and asked.question.endswith(
        "Answer the question using a single word or phrase.") and asked.expected
    assert demo.demo_input(None, "What is it?").expected is None


def test_prumerge_plus_runs_its_budgets_on_the_576_patch_geometry(tiny_llava_576_dir, tmp_path):
    output = tmp_path / "rows.jsonl"
    assert cli.main(["demo", "--model", str(tiny_llava_576_dir), "--max-new-tokens", "1", "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert rows[0]["visual_tokens_to_llm"] == 576
    merged = [(r["keep"], r["visual_tokens_to_llm"]) for r in rows if r["method"] == "prumerge_plus"]
    assert [keep for keep, _ in merged] == [64, 128, 256]
    assert 54 <= merged[0][1] <= 67 and 97 <= merged[1][1] <= 138 and 193 <= merged[2][1] <= 289  # |top ∪ grid| + 1


def test_the_default_demo_runs_the_toy_llava_and_answers_the_easy_vqa_question(toy_dir, tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a temporary folder would be left
    output = tmp_path / "rows.jsonl"
    assert cli.main(["demo", "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert {r["method"] for r in rows} == set(methods()) - {"fitprune"}  # needs a recipe fitted to the model
    for row in rows:
        if row["reduction_ratio"] is not None:  # the unpruned 256 patches, or round(256·(1−R))
            assert row["visual_tokens_to_llm"] == round(256 * (1 - row["reduction_ratio"])), row
        elif row["method"] == "sparsevlm":  # its published settings; what reaches the last layer varies
            assert row["visual_tokens_to_llm"] < row["layer_mean_visual_tokens"] < 256
        else:  # PruMerge+ keeps about its budget (|top ∪ grid| + 1)
            assert method_info(row["method"]).variable_count and row["keep"] / 2 <= row["visual_tokens_to_llm"] <= row["keep"] * 1.2
    unpruned = rows[0]
    assert unpruned["method"] == "none" and normalize_prediction(unpruned["answer"]) == unpruned["expected_answer"]
    printed = capsys.readouterr().out
    assert f"model: {toy_dir}" in printed and f"expected answer (from the data): {unpruned['expected_answer']!r}" in printed
    assert [path.name for path in tmp_path.iterdir()] == ["rows.jsonl"]
