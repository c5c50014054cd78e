"""Paper tables (golden files), retention and attention figures, and the notebooks."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from llava_patch import cli
from llava_patch.eval.benchmarks import get_benchmark
from llava_patch.models import toy
from llava_patch.paper.figures import retention_figure, write_figures
from llava_patch.paper.published import load_published
from llava_patch.paper.tables import (MISSING, UNAVAILABLE, build_tables, render_latex, render_markdown,
                                      reproduced_results, runnable_methods, tables_with_runs, write_tables)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def _fake_run(root: Path, name: str, model: str, paper_model: str | None, method: str, benchmark: str, tokens: float,
              headline: float, **manifest) -> None:
    run = root / name
    run.mkdir(parents=True)
    measured = {"min": tokens, "mean": tokens, "max": tokens} if tokens else None
    (run / "manifest.json").write_text(json.dumps({
        "model": model, "paper_model": paper_model, "method": method, "benchmark": benchmark,
        "requested_budget": {"keep": None, "reduction_ratio": None},
        "measured_visual_tokens": measured, **manifest}))
    # what the scorers write: every metric, the record's headline one among them
    metric = get_benchmark(benchmark).headline
    (run / "metrics.json").write_text(json.dumps({"headline": headline, metric: headline, "n_answered": 10}))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "a", "/ckpt/llava-v1.5-7b", "llava-1.5-7b", "none", "pope", 576, 85.90)  # within tolerance of 85.87
    _fake_run(root, "b", "/ckpt/llava-v1.5-7b", "llava-1.5-7b", "fastervlm", "pope", 29, 60.00)  # far from 67.24: flagged
    _fake_run(root, "c", "/ckpt/llava-v1.5-7b", "llava-1.5-7b", "fastervlm", "sqa", 29, 69.60)  # sqa → SQA-IMG column
    _fake_run(root, "d", "/ckpt/llava-v1.5-13b", "llava-1.5-13b", "fastv", "pope", 29, 50.00)
    _fake_run(root, "e", "/ckpt/llava-v1.5-7b-copy", None, "fastervlm", "gqa", 29, 1.00)  # not a paper model: unmatched
    return root


EVERY_METHOD = {row["method"] for row in load_published()}  # as if every published row could run here


def test_the_rendered_table_matches_its_golden_file(runs):
    tables = build_tables(load_published(), reproduced_results(runs), runnable=EVERY_METHOD)
    text = render_markdown("fastervlm", "llava-1.5-7b", tables[("fastervlm", "llava-1.5-7b")])
    assert text == (GOLDEN / "fastervlm_llava-1.5-7b_with_runs.md").read_text(encoding="utf-8")
    assert "85.87 / 85.90 (+0.03) |" in text and "67.24 / 60.00 (-7.24) ⚠" in text and "69.56 / 69.60 (+0.04)" in text
    assert f"78.52 {MISSING}" in text  # VQAv2 unpruned: not reproduced


def test_published_columns_are_benchmark_records_and_keep_each_papers_title(tmp_path):
    from llava_patch.paper.published import benchmark_record
    from llava_patch.paper.tables import column_title

    for row in load_published():
        record = benchmark_record(row["benchmark"])
        assert record is None if row["benchmark"] == "average" else get_benchmark(record).name == record
    assert benchmark_record("sqa_img") == benchmark_record("sqa") == "sqa"
    assert column_title("fastervlm", "sqa_img") == "SQA-IMG" and column_title("vtc_cls", "sqa") == "SciQA"
    assert column_title("fastervlm", "mmbench_cn") == "MMB-CN" and column_title("vtc_cls", "average") == "Average"
    # a method whose token count varies per image is matched by its nominal budget, not the mean it measured
    _fake_run(tmp_path, "p", "/ckpt/llava-v1.5-7b", "llava-1.5-7b", "prumerge_plus", "sqa", 70.4, 68.0)
    manifest = tmp_path / "p" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"keep": null', '"keep": 64'))
    (result,) = reproduced_results(tmp_path)
    assert result["tokens"] == 64 and result["values"] == {None: 68.0}
    table = build_tables(load_published(), [result])[("vtc_cls", "llava-1.5-7b")]
    (cell,) = [cell for (key, benchmark, _), cell in table["cells"].items()
               if key[:2] == ("prumerge_plus", 64) and benchmark == "sqa"]
    assert cell.reproduced == 68.0


def test_committed_tables_are_the_published_ones_rendered_now(tmp_path):
    import llava_patch

    missing = {"sparsevlm", "fitprune"} - set(llava_patch.methods())
    if missing:  # the committed tables show their rows as runnable
        pytest.skip(f"{', '.join(sorted(missing))} not registered yet")
    written = write_tables(tmp_path)
    assert len(written) == 10  # 5 tables × (.md, .tex)
    for path in written:
        assert path.read_text(encoding="utf-8") == (ROOT / "paper_tables" / path.name).read_text(encoding="utf-8"), path.name


def test_latex_escapes_and_marks(runs, tmp_path):
    write_tables(tmp_path, runs)
    latex = (tmp_path / "fastervlm_llava-1.5-7b.tex").read_text()
    assert r"\begin{tabular}" in latex and r"$^\dagger$" in latex and r"$\cdot$" in latex and r"\#" in latex


def test_retention_figures_have_a_panel_per_table_and_repeat_byte_for_byte(runs, tmp_path):
    tables = build_tables(load_published(), [])
    figure = retention_figure(tables)
    assert [axis.get_title() for axis in figure.axes] == [
        "fastervlm: llava-1.5-7b (relative_average_percent)", "fastervlm: llava-1.5-13b (relative_average_percent)",
        "fastervlm: llava-next-7b (relative_average_percent)", "fastervlm: video-llava-7b (relative_accuracy_percent)",
        "vtc_cls: llava-1.5-7b (average)"]
    lines = {line.get_label() for line in figure.axes[0].get_lines()}
    assert {"fastv", "fitprune", "sparsevlm", "fastervlm", "unpruned"} <= lines
    first, second = write_figures(tmp_path / "one", runs), write_figures(tmp_path / "two", runs)
    assert [p.name for p in first] == [p.name for p in second] and len(first) == 14
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_the_figures_command_adds_the_attention_figures(tiny_llava_dir, tmp_path):
    from llava_patch.models.tiny import build_instruction_samples

    samples, image_root = build_instruction_samples(tmp_path / "images", count=2)
    (tmp_path / "samples.json").write_text(json.dumps(samples))
    assert cli.main(["figures", "--output", str(tmp_path / "figs"), "--model", str(tiny_llava_dir),
                     "--samples", str(tmp_path / "samples.json"), "--image-root", str(image_root)]) == 0
    for name in ("attention_maps_sample-0", "attention_maps_sample-1", "attention_shift_bars", "attention_shift_heatmaps",
                 "attention_dispersion"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 1000 and (tmp_path / "figs" / f"{name}.pdf").exists()
        sidecar = json.loads((tmp_path / "figs" / f"{name}.json").read_text())
        assert sidecar["model"] == tiny_llava_dir.name and sidecar["prompt_format"] == "vicuna_v1"
        assert sidecar["made_by"].startswith(f"llava-patch figures --model {tiny_llava_dir} --samples ")


@pytest.mark.parametrize("name", ["retention_curves", "attention_maps", "attention_shift_dispersion"])
def test_notebooks_are_committed_clean_and_run_top_to_bottom(name, tmp_path, monkeypatch):
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert all(not cell.get("outputs") and not cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")
    for variable in ("CKPT", "SAMPLES", "IMAGE_ROOT", "RUNS", "TOY_SWEEP"):
        monkeypatch.delenv(variable, raising=False)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    if name.startswith("attention"):  # by default the toy LLaVA, which the notebook names
        assert any(toy.TOY_NAME in output.get("text", "") for output in outputs)


@pytest.mark.parametrize("command", ["tables", "figures"])
def test_a_runs_folder_that_does_not_exist_is_named(command, tmp_path, capsys):
    write = write_tables if command == "tables" else write_figures
    with pytest.raises(FileNotFoundError, match="nonexistent: no such directory"):
        write(tmp_path / "out", tmp_path / "nonexistent")
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="file: not a directory"):
        write(tmp_path / "out", tmp_path / "file")
    assert not (tmp_path / "out").exists()
    assert cli.main([command, "--runs", str(tmp_path / "nonexistent"), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"llava-patch {command}: {tmp_path / 'nonexistent'}: no such directory " \
        "(the runs: a directory holding evaluation runs)\n"


def test_a_runs_folder_without_a_matching_finished_run_says_so_in_one_line(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "stopped").mkdir(parents=True)
    (empty / "stopped" / "manifest.json").write_text("{}")  # answers but no metrics: not finished
    write_tables(tmp_path / "tables", empty)
    assert capsys.readouterr().err == f"{empty}: no finished evaluation run (manifest.json with metrics.json) " \
                                      "under it; only published numbers are shown\n"
    tables_with_runs(empty)  # what write_figures reads too (drawing them is slow)
    assert capsys.readouterr().err.count("no finished evaluation run") == 1
    other = tmp_path / "other"
    _fake_run(other, "e", "/ckpt/tiny", None, "fastervlm", "gqa", 29, 1.00)  # none of the papers' models
    write_tables(tmp_path / "tables-other", other)
    assert capsys.readouterr().err == f"{other}: 1 finished run(s), none of a published model, method, benchmark and " \
                                      "token count; only published numbers are shown\n"
    write_tables(tmp_path / "tables-runs", runs)  # runs that fill cells: nothing to say
    assert capsys.readouterr().err == ""


def test_jupyter_nbconvert_is_installed_with_the_test_extras():
    """The notebooks are run with `jupyter nbconvert --to notebook --execute` (nbconvert is a test extra)."""
    import subprocess
    import sys

    jupyter = Path(sys.executable).parent / "jupyter"
    finished = subprocess.run([str(jupyter), "nbconvert", "--version"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0 and finished.stdout.strip().startswith("7."), finished.stderr


def test_the_notebooks_show_a_sweep_only_where_it_has_run(tmp_path):
    from IPython.display import Image, Markdown

    from llava_patch.paper.figures import sweep_summary

    (note,) = sweep_summary(tmp_path)
    assert isinstance(note, Markdown) and "No sweep results" in note.data
    (tmp_path / "results.md").write_text("| benchmark |\n")
    (tmp_path / "retention.png").write_bytes(PNG)
    table, figure = sweep_summary(tmp_path)
    assert isinstance(table, Markdown) and table.data == "| benchmark |\n"
    assert isinstance(figure, Image) and figure.data == PNG


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005"
                    "0001ff5d1a3a0a0000000049454e44ae426082")  # a 1×1 pixel


def test_runs_land_in_the_rows_their_authors_code_filled(tmp_path):
    """FastV run with int(576·(1−R)) = 57 tokens names the printed 58: it fills the 90% row; SparseVLM's
    printed count is its layer-averaged budget; an --empty-image run (the image prompt, 0 visual tokens)
    fills the 0-token row, a text-only --no-image run does not (its prompt differs)."""
    root = tmp_path / "runs"
    _fake_run(root, "fastv-57", "/c/llava-v1.5-7b", "llava-1.5-7b", "fastv", "pope", 57, 57.0, printed_tokens=58)
    _fake_run(root, "fastv-28", "/c/llava-v1.5-7b", "llava-1.5-7b", "fastv", "gqa", 28, 46.0, printed_tokens=29)
    _fake_run(root, "sparsevlm", "/c/llava-v1.5-7b", "llava-1.5-7b", "sparsevlm", "pope", 40, 66.0, printed_tokens=58)
    _fake_run(root, "empty", "/c/llava-v1.5-7b", "llava-1.5-7b", "none", "pope", 0, 47.0, empty_image=True)
    _fake_run(root, "text", "/c/llava-v1.5-7b", "llava-1.5-7b", "none", "gqa", 0, 37.0, no_image=True)
    _fake_run(root, "unknown", "/c/llava-v1.5-7b", "llava-1.5-7b", "not_a_method", "gqa", 10, 1.0)  # tolerated
    results = {Path(result["run"]).name: (result["method"], result["tokens"]) for result in reproduced_results(root)}
    assert results == {"fastv-57": ("fastv", 58), "fastv-28": ("fastv", 29), "sparsevlm": ("sparsevlm", 58),
                       "empty": ("no_image", 0), "text": ("none", 0), "unknown": ("not_a_method", 10)}
    table = tables_with_runs(root)[("fastervlm", "llava-1.5-7b")]
    reproduced = {(key[:2], benchmark): cell.reproduced for (key, benchmark, _), cell in table["cells"].items()
                  if cell.reproduced is not None}
    assert reproduced == {(("fastv", 58), "pope"): 57.0, (("fastv", 29), "gqa"): 46.0,
                          (("sparsevlm", 58), "pope"): 66.0, (("no_image", 0), "pope"): 47.0}


def test_rows_of_methods_not_registered_here_are_marked(tmp_path):
    table = build_tables(load_published(), [], runnable=EVERY_METHOD - {"fitprune"})[("fastervlm", "llava-1.5-7b")]
    text = render_markdown("fastervlm", "llava-1.5-7b", table)
    assert f"{UNAVAILABLE}: not runnable here (fitprune: no such method registered)" in text
    fitprune = [line for line in text.splitlines() if line.startswith("| fitprune |")]
    assert len(fitprune) == 5 and all(UNAVAILABLE in line and MISSING not in line for line in fitprune)
    assert all(MISSING in line for line in text.splitlines() if line.startswith("| sparsevlm |"))
    assert r"$\times$" in render_latex("fastervlm", "llava-1.5-7b", table)
    assert UNAVAILABLE not in render_markdown("fastervlm", "llava-1.5-7b",
                                              build_tables(load_published(), [], EVERY_METHOD)[("fastervlm", "llava-1.5-7b")])


@pytest.mark.parametrize("method", ["sparsevlm", "fitprune", "no_image"])
def test_the_new_rows_count_as_runnable_once_their_method_exists(method):
    import llava_patch

    if method != "no_image" and method not in llava_patch.methods():
        pytest.skip(f"{method} is not registered yet")
    assert method in runnable_methods()
    tables = build_tables(load_published(), [])
    flags = [runnable for table in tables.values() for key, runnable in table["runnable"].items() if key[0] == method]
    assert flags and all(flags)
