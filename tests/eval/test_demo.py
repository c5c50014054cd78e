"""`llava-patch demo` runs every method end to end and never overwrites an existing file."""

import json

from llava_patch import cli


def test_demo_runs_every_method_and_reports_the_tokens_that_reached_the_llm(tiny_llava_dir, tmp_path, capsys):
    output = tmp_path / "rows.jsonl"
    assert cli.main(["demo", "--model", str(tiny_llava_dir), "--max-new-tokens", "2", "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["method"], r["visual_tokens_to_llm"]) for r in rows[:4]] == [
        ("none", 64), ("fastervlm", 16), ("fastervlm", 6), ("fastervlm", 3)]
    assert {r["method"] for r in rows} == {"none", "fastervlm", "vtc_cls", "fastv", "random", "grid"}
    assert "wall time of one call after one warm-up call" in capsys.readouterr().out


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


def test_demo_without_a_model_runs_prumerge_plus_on_the_576_patch_geometry_and_leaves_no_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory would leave its folder
    output = tmp_path / "rows.jsonl"
    assert cli.main(["demo", "--max-new-tokens", "1", "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert rows[0]["visual_tokens_to_llm"] == 576
    merged = [(r["keep"], r["visual_tokens_to_llm"]) for r in rows if r["method"] == "prumerge_plus"]
    assert [keep for keep, _ in merged] == [64, 128, 256]
    assert 54 <= merged[0][1] <= 67 and 97 <= merged[1][1] <= 138 and 193 <= merged[2][1] <= 289  # |top ∪ grid| + 1
    assert [path.name for path in tmp_path.iterdir()] == ["rows.jsonl"]
