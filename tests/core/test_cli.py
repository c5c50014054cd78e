"""The command line: one table of subcommands whose help is fast (no torch) and lists the choices."""

import subprocess
import sys

import llava_patch
from llava_patch import cli
from llava_patch.eval.benchmarks import BENCHMARKS


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=120)


def test_help_imports_no_torch():
    probe = ("import sys; from llava_patch import cli; cli.build_parser().format_help(); "
             "[p.format_help() for p in cli.build_parser()._subparsers._group_actions[0].choices.values()]; "
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = _run("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_command_is_in_the_table_and_method_and_benchmark_list_their_choices():
    result = _run("-m", "llava_patch.cli", "--help")
    assert result.returncode == 0 and all(name in result.stdout for name in cli.COMMANDS)
    text = _run("-m", "llava_patch.cli", "eval", "--help").stdout.replace("\n", " ")
    assert all(name in text for name in llava_patch.methods())
    assert all(name in text for name in BENCHMARKS)


def test_python_m_eval_is_the_eval_command():
    direct = _run("-m", "llava_patch.eval", "--help").stdout
    assert "--benchmark" in direct and "--reduction-ratio" in direct
    result = _run("-m", "llava_patch.eval", "--model", "x", "--benchmark", "pope", "--data-root", "x",
                  "--output-dir", "x", "--method", "no_such_method")
    assert result.returncode == 2 and "invalid choice: 'no_such_method'" in result.stderr


def test_methods_lists_what_each_method_declares(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "fastv          stage=llm" in out and "prumerge_plus  stage=vision budget: keep ∈ [64, 128, 256]" in out
    assert "none           stage=vision budget: none (keeps every token)" in out


def test_method_info_reads_the_registry():
    info = {name: llava_patch.method_info(name) for name in llava_patch.methods()}
    assert [n for n, i in info.items() if i.stage == "llm"] == ["fastv", "fitprune", "sparsevlm"]
    assert [n for n, i in info.items() if not i.takes_budget] == ["none"]
    assert [n for n, i in info.items() if i.variable_count] == ["prumerge_plus", "sparsevlm"]
    assert [n for n, i in info.items() if i.budgets] == ["prumerge_plus", "sparsevlm"] and info["sparsevlm"].budgets == (192, 128, 64)
    assert [n for n, i in info.items() if i.needs_recipe] == ["fitprune"] and info["fitprune"].options == {"recipe": None}
    assert info["sparsevlm"].options == {"layers": None, "scale": None, "bias": None, "seed": 0, "settings": None}
    assert info["vtc_cls"].options == {"layers": 3, "ensemble": "sum"} and info["fastv"].options == {"layer": 2}
    assert not info["prumerge_plus"].takes_reduction_ratio and info["fastervlm"].takes_reduction_ratio
