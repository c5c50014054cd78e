"""The experiment scripts (experiments/*.sh): usage, resumable reruns, sweeps that go on past complete runs,
and the launch command for several processes."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llava_patch.eval.minibench import build_minibench

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"


def _environment(tmp_path, **variables):
    # a clean environment: only what a user would set (one thread: quick and steady on a busy host)
    return {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
            **{name: str(value) for name, value in variables.items()}}


def _script(path, *arguments, environment, timeout=300):
    return subprocess.run(["bash", str(EXPERIMENTS / path), *arguments], env=environment, capture_output=True,
                          text=True, timeout=timeout)


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("script, keep", [("v1_5/pope.sh", "KEEP"), ("v1_6/gqa.sh", "KEEP_PER_CROP"),
                                          ("video/msvd.sh", "KEEP_PER_FRAME")])
@pytest.mark.parametrize("arguments", [[], ["fastervlm"]])
def test_missing_arguments_print_the_usage_line(script, keep, arguments, tmp_path):
    finished = _script(script, *arguments, environment=_environment(tmp_path))
    assert finished.returncode == 2 and finished.stdout == ""
    (line,) = _lines(finished.stderr)  # not bash's "$3: unbound variable"
    assert line.startswith("usage: ") and f"{script} METHOD {keep} " in line
    assert all(name in line for name in ("CKPT=", "DATA=", "GPUS=", "PROCESSES=", "RUNS=", "BATCH="))


def test_a_malformed_budget_is_named_with_the_usage(tmp_path):
    finished = _script("v1_5/pope.sh", "fastervlm", "--limit", "2", environment=_environment(tmp_path))
    assert finished.returncode == 2
    message, usage = _lines(finished.stderr)
    assert message.endswith("pope.sh: KEEP '--limit' is not a number of tokens") and usage.startswith("usage: ")


@pytest.mark.parametrize("variables, missing", [({}, "CKPT is not set"), ({"CKPT": "ckpt"}, "DATA is not set"),
                                                ({"CKPT": "ckpt", "DATA": "/nonexistent"}, "DATA=/nonexistent: no such directory")])
def test_missing_checkpoint_or_data_is_one_line_naming_it(variables, missing, tmp_path):
    for script, arguments in (("v1_5/pope.sh", ["fastervlm", "58"]), ("reproduce/fastervlm_llava15_7b.sh", [])):
        finished = _script(script, *arguments, environment=_environment(tmp_path, **variables))
        (line,) = _lines(finished.stderr)
        assert finished.returncode == 2 and line.startswith(f"{EXPERIMENTS / script}: {missing}")


def _fake_python(tmp_path, fail_at=None, status=2):
    """A stand-in for $PYTHON that logs each evaluation it is asked for and answers as the runner does
    for a complete run (one line, rc 0); the `fail_at`-th evaluation fails with `status`."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/bin/bash
# in-process runs: python -c CODE SCRIPT METHOD KEEP ARGUMENTS...
echo "$4 $5 ${{*:6}}" >> {shlex.quote(str(log))}
calls=$(wc -l < {shlex.quote(str(log))})
if [[ "$calls" == "{fail_at}" ]]; then echo "llava-patch eval: something broke" >&2; exit {status}; fi
echo "run $calls: complete; nothing to do"
""")
    fake.chmod(0o755)
    return fake, log


def test_a_sweep_goes_on_past_complete_runs_and_ends_with_rc_0(tmp_path):
    (tmp_path / "data").mkdir()
    fake, log = _fake_python(tmp_path)
    environment = _environment(tmp_path, PYTHON=fake, CKPT="/ckpt/llava-v1.5-7b", DATA=tmp_path / "data")
    finished = _script("reproduce/vtc_cls_llava15_7b.sh", "--limit", "5", environment=environment)
    assert finished.returncode == 0, finished.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 8 * (1 + 3 * 3) and calls[0] == "none 576 --model /ckpt/llava-v1.5-7b --backend llava " \
        f"--benchmark sqa --data-root {tmp_path / 'data'} --output-dir runs/v1_5/llava-v1.5-7b/sqa/none-576 --batch-size 1 --limit 5"
    assert calls[-1].startswith("vtc_cls 64 ") and "--benchmark seed " in calls[-1]
    lines = _lines(finished.stdout)
    assert len(lines) == len(calls) + 1 and "llava-patch tables --runs runs" in lines[-1] and finished.stderr == ""


def _recipes(tmp_path, keeps=(432, 144, 29)):
    """A FITPRUNE_RECIPES directory with (empty) recipes fitprune-<keep>.json."""
    recipes = tmp_path / "recipes"
    recipes.mkdir(exist_ok=True)
    for keep in keeps:
        (recipes / f"fitprune-{keep}.json").write_text("{}")
    return recipes


SPARSEVLM_KEEPS = {"fastervlm_llava15_7b.sh": (432, 288, 144, 58), "fastervlm_llava15_13b.sh": (432, 288, 144, 58),
                   "fastervlm_llava_next_7b.sh": (2160, 1440, 720, 290)}


def _sparsevlm_settings(tmp_path, keeps=(432, 288, 144, 58, 2160, 1440, 720, 290)):
    """A SPARSEVLM_SETTINGS directory with (empty) settings files sparsevlm-<keep>.json."""
    settings = tmp_path / "sparsevlm-settings"
    settings.mkdir(exist_ok=True)
    for keep in keeps:
        (settings / f"sparsevlm-{keep}.json").write_text("{}")
    return settings


@pytest.mark.parametrize("status", [2, 130])
def test_a_sweep_stops_at_a_failed_run_and_names_it(status, tmp_path):
    (tmp_path / "data").mkdir()
    fake, log = _fake_python(tmp_path, fail_at=3, status=status)
    environment = _environment(tmp_path, PYTHON=fake, CKPT="/ckpt/llava-v1.5-7b", DATA=tmp_path / "data",
                               FITPRUNE_RECIPES=_recipes(tmp_path), SPARSEVLM_SETTINGS=_sparsevlm_settings(tmp_path))
    finished = _script("reproduce/fastervlm_llava15_7b.sh", environment=environment)
    assert finished.returncode == status and len(log.read_text().splitlines()) == 3
    script = EXPERIMENTS / "reproduce" / "fastervlm_llava15_7b.sh"
    assert _lines(finished.stderr) == ["llava-patch eval: something broke",
                                       f"{script}: stopped at v1_5/vqav2.sh fastv 288 (exit {status}); rerun {script} to resume"]


def test_several_processes_go_through_accelerates_multi_process_launcher(tmp_path):
    """PROCESSES=2 (or two GPUs in GPUS): `accelerate launch --multi_gpu --num_processes 2`; without
    --multi_gpu accelerate starts one process on a host without two GPUs. The real interpreter answers the
    registry question; the launch itself is logged."""
    (tmp_path / "data").mkdir()
    log = tmp_path / "launch.log"
    wrapper = tmp_path / "python"
    wrapper.write_text(f"""#!/bin/bash
if [[ "$1" == -m ]]; then echo "$*" > {shlex.quote(str(log))}; exit 0; fi
exec {shlex.quote(sys.executable)} "$@"
""")
    wrapper.chmod(0o755)
    environment = _environment(tmp_path, PYTHON=wrapper, CKPT="/ckpt/llava-v1.5-7b", DATA=tmp_path / "data", PROCESSES=2)
    finished = _script("v1_5/pope.sh", "none", "576", environment=environment)
    assert finished.returncode == 0, finished.stderr
    launch = log.read_text().split()
    assert launch[:4] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes"] and launch[4] == "2"
    assert launch[launch.index("-m", 1) + 1] == "llava_patch.eval"
    assert "--method" in launch and "--keep" not in launch  # the unpruned method takes no budget
    port = int(launch[launch.index("--main_process_port") + 1])
    assert 0 < port < 65536 and int(launch[launch.index("--num_cpu_threads_per_process") + 1]) >= 1


def test_rerunning_a_script_skips_the_complete_run_in_one_line(tiny_original, tmp_path):
    data = build_minibench(tmp_path / "eval", images=1)  # 3 POPE questions: one batch
    environment = _environment(tmp_path, CKPT=tiny_original[0], DATA=data, RUNS=tmp_path / "runs")
    arguments = ["vtc_cls", "16", "--batch-size", "3", "--dtype", "float32"]
    first = _script("v1_5/pope.sh", *arguments, environment=environment)
    assert first.returncode == 0, first.stderr[-3000:]
    output = tmp_path / "runs" / "v1_5" / "llava-v1.5-tiny" / "pope" / "vtc_cls-16"
    answers = (output / "answers.jsonl").read_bytes()
    second = _script("v1_5/pope.sh", *arguments, environment=environment)
    assert second.returncode == 0, second.stderr[-3000:]
    both = second.stdout + second.stderr
    assert "Traceback" not in both and "Error" not in both
    (line,) = _lines(both)
    assert str(output) in line and "nothing to do" in line
    assert (output / "answers.jsonl").read_bytes() == answers


# The reproduce scripts: every row of the papers' tables -----------------------------------------------
REPRODUCE = {  # script → (paper, published model, family of its runs)
    "fastervlm_llava15_7b.sh": ("fastervlm", "llava-1.5-7b"),
    "fastervlm_llava15_13b.sh": ("fastervlm", "llava-1.5-13b"),
    "fastervlm_llava_next_7b.sh": ("fastervlm", "llava-next-7b"),
    "fastervlm_video_llava_7b.sh": ("fastervlm", "video-llava-7b"),
    "vtc_cls_llava15_7b.sh": ("vtc_cls", "llava-1.5-7b"),
}
# per family: (visual tokens of the unpruned model, images/crops/frames a vision-stage KEEP is per)
GEOMETRY = {"v1_5": (576, 1), "v1_6-paper": (2880, 5), "video": (2048, 8)}
LLM_STAGE = {"fastv", "sparsevlm", "fitprune"}  # their KEEP is per sample, over all its visual tokens


def _dry_run(script, tmp_path, *arguments, **variables):
    (tmp_path / "data").mkdir(exist_ok=True)
    environment = _environment(tmp_path, CKPT="/ckpt/model", DATA=tmp_path / "data", DRY_RUN=1,
                               FITPRUNE_RECIPES=_recipes(tmp_path), SPARSEVLM_SETTINGS=_sparsevlm_settings(tmp_path),
                               **variables)
    return _script(f"reproduce/{script}", *arguments, environment=environment, timeout=60)


def _run_row(command: list[str]) -> tuple[str, str, int]:
    """(benchmark, method, "# Token" row) a dry-run `llava-patch eval` command fills."""
    def value(flag):
        return command[command.index(flag) + 1] if flag in command else None

    family = value("--output-dir").split("/")[1]
    unpruned, items = GEOMETRY[family]
    method = value("--method")
    if "--empty-image" in command:
        assert method == "none" and value("--keep") is None
        return value("--benchmark"), "no_image", 0
    if value("--printed-tokens") is not None:
        return value("--benchmark"), method, int(value("--printed-tokens"))
    if method == "none":
        return value("--benchmark"), method, unpruned
    keep = int(value("--keep"))
    return value("--benchmark"), method, keep if method in LLM_STAGE else keep * items


@pytest.mark.parametrize("script", sorted(REPRODUCE))
def test_each_reproduce_script_runs_every_row_of_its_table_once(script, tmp_path):
    from llava_patch.paper.published import benchmark_record, load_published

    finished = _dry_run(script, tmp_path)
    assert finished.returncode == 0 and finished.stderr == "", finished.stderr
    *lines, last = _lines(finished.stdout)
    assert "llava-patch tables --runs runs" in last
    commands = [shlex.split(line)[1:] for line in lines]
    assert all(line.startswith("llava-patch eval --model /ckpt/model ") for line in lines)
    outputs = [command[command.index("--output-dir") + 1] for command in commands]
    assert len(set(outputs)) == len(outputs)  # one folder per run: none overwrites another
    runs = [_run_row(command) for command in commands]
    assert len(set(runs)) == len(runs)
    paper, model = REPRODUCE[script]
    published = {(benchmark_record(row["benchmark"]), row["method"], row["tokens"])
                 for row in load_published(include_reference=False)
                 if row["paper"] == paper and row["model"] == model and row["benchmark"] != "average"}
    assert set(runs) == published


def test_fastv_runs_keep_what_its_authors_code_kept_and_name_the_printed_count(tmp_path):
    """FastV's lmms-eval fastv_kvcache.py keeps int(576·(1−R)): 57/28 in the rows printed 58/29."""
    expected = {"fastervlm_llava15_7b.sh": {("57", "58"), ("28", "29")},
                "fastervlm_llava_next_7b.sh": {("288", "290"), ("144", "145")},
                "fastervlm_video_llava_7b.sh": {("204", "208"), ("102", "104")}}
    for script, pairs in expected.items():
        commands = [shlex.split(line)[1:] for line in _lines(_dry_run(script, tmp_path).stdout)[:-1]]
        fastv = {(c[c.index("--keep") + 1], c[c.index("--printed-tokens") + 1] if "--printed-tokens" in c else None)
                 for c in commands if c[c.index("--method") + 1] == "fastv"}
        assert {pair for pair in fastv if pair[1] is not None} == pairs, script
        assert all(keep == printed or printed is None for keep, printed in fastv - pairs)


def test_fitprune_rows_need_their_recipes_named_in_one_line(tmp_path):
    (tmp_path / "data").mkdir()
    script = EXPERIMENTS / "reproduce" / "fastervlm_llava15_7b.sh"
    base = _environment(tmp_path, CKPT="/ckpt/llava-v1.5-7b", DATA=tmp_path / "data", DRY_RUN=1)
    finished = _script("reproduce/fastervlm_llava15_7b.sh", environment=base)
    (line,) = _lines(finished.stderr)
    assert finished.returncode == 2 and finished.stdout == ""
    assert line.startswith(f"{script}: FITPRUNE_RECIPES is not set") and "llava-patch fitprune-recipe --help" in line
    recipes = _recipes(tmp_path, keeps=(432, 144))
    finished = _script("reproduce/fastervlm_llava15_7b.sh", environment={**base, "FITPRUNE_RECIPES": str(recipes)})
    (line,) = _lines(finished.stderr)
    assert finished.returncode == 2 and finished.stdout == ""
    assert line.startswith(f"{script}: {recipes / 'fitprune-29.json'}: no such file")
    assert "llava-patch fitprune-recipe --help" in line
    finished = _dry_run("fastervlm_llava15_7b.sh", tmp_path)
    fitprune = [line for line in _lines(finished.stdout) if "--method fitprune" in line]
    assert len(fitprune) == 10 * 5
    fitted = [line for line in fitprune if "--option recipe=" in line]  # 50 and 90%: the authors' published recipes
    assert len(fitted) == 10 * 3 and not any(" --keep 288 " in line or " --keep 58 " in line for line in fitted)
    assert all(f"--option recipe={tmp_path / 'recipes'}/fitprune-{line.split()[-1]}.json" in line for line in fitted)


@pytest.mark.parametrize("script", sorted(SPARSEVLM_KEEPS))
def test_sparsevlm_rows_need_their_calibrated_settings_named_in_one_line(script, tmp_path):
    """No published scale/bias for FasterVLM's SparseVLM counts: each row runs with the settings file
    `llava-patch sparsevlm-calibrate` writes for its count; a missing one stops the script before any run."""
    (tmp_path / "data").mkdir()
    path = EXPERIMENTS / "reproduce" / script
    keeps = SPARSEVLM_KEEPS[script]
    base = _environment(tmp_path, CKPT="/ckpt/model", DATA=tmp_path / "data", DRY_RUN=1, FITPRUNE_RECIPES=_recipes(tmp_path))
    finished = _script(f"reproduce/{script}", environment=base)
    (line,) = _lines(finished.stderr)
    assert finished.returncode == 2 and finished.stdout == ""
    assert line.startswith(f"{path}: SPARSEVLM_SETTINGS is not set") and "llava-patch sparsevlm-calibrate --help" in line
    settings = _sparsevlm_settings(tmp_path, keeps=keeps[:-1])
    finished = _script(f"reproduce/{script}", environment={**base, "SPARSEVLM_SETTINGS": str(settings)})
    (line,) = _lines(finished.stderr)
    assert finished.returncode == 2 and finished.stdout == ""
    missing = settings / f"sparsevlm-{keeps[-1]}.json"
    assert line.startswith(f"{path}: {missing}: no such file")
    assert "llava-patch sparsevlm-calibrate --model /ckpt/model --backend llava" in line
    assert f"--keep {keeps[-1]} --output {missing}" in line
    assert ("--option mode=paper" in line) == (script == "fastervlm_llava_next_7b.sh")
    finished = _dry_run(script, tmp_path)
    assert finished.returncode == 0, finished.stderr
    commands = [shlex.split(line)[1:] for line in _lines(finished.stdout)[:-1]]
    sparsevlm = [c for c in commands if c[c.index("--method") + 1] == "sparsevlm"]
    assert len(sparsevlm) == 10 * len(keeps)
    for command in sparsevlm:
        keep = command[command.index("--keep") + 1]
        assert command[command.index("--printed-tokens") + 1] == keep and int(keep) in keeps
        assert f"settings={tmp_path / 'sparsevlm-settings'}/sparsevlm-{keep}.json" in command


def test_the_zero_token_row_runs_the_unpruned_model_with_an_empty_image(tmp_path):
    (tmp_path / "data").mkdir()
    fake, log = _fake_python(tmp_path)
    environment = _environment(tmp_path, PYTHON=fake, CKPT="/ckpt/llava-v1.5-7b", DATA=tmp_path / "data")
    finished = _script("v1_5/pope.sh", "no_image", "0", environment=environment)
    assert finished.returncode == 0, finished.stderr
    (call,) = log.read_text().splitlines()
    assert call.startswith("none 0 ") and call.endswith(" --empty-image")
    assert "--output-dir runs/v1_5/llava-v1.5-7b/pope/no_image-0 " in call
    finished = _script("v1_5/pope.sh", "no_image", "5", environment=environment)
    message, usage = _lines(finished.stderr)
    assert finished.returncode == 2 and message.endswith("METHOD no_image is the 0-token row; its KEEP is 0, not 5")


@pytest.mark.parametrize("method", ["sparsevlm", "fitprune"])
def test_the_scripts_rows_of_methods_being_added_are_registered(method):
    import llava_patch

    if method not in llava_patch.methods():
        pytest.skip(f"{method} is not registered yet")
    info = llava_patch.method_info(method)
    assert info.takes_budget and info.stage == "llm"


def test_the_toy_in_llm_baselines_script_fits_on_training_questions_then_evaluates_the_sweeps_sample(toy_dir, tmp_path):
    """DRY_RUN=1 lists every step of experiments/toy/in_llm_baselines.sh and writes nothing: calibration
    questions, FitPrune recipes at 75/90/95% (keep 64/26/13 of 256), SparseVLM settings for the same
    counts, each row's evaluation with the file its fitting writes, and the table."""
    out, sweep = tmp_path / "out", tmp_path / "sweep"
    environment = _environment(tmp_path, DRY_RUN=1, OUT=out, SWEEP=sweep, LLAVA_PATCH_CACHE=toy_dir.parent)
    finished = _script("toy/in_llm_baselines.sh", environment=environment)
    assert finished.returncode == 0 and finished.stderr == "", finished.stderr
    lines = [line for line in _lines(finished.stdout) if not line.startswith("#")]
    assert not out.exists() and not sweep.exists()
    calibration, *commands, table = lines
    assert "write_calibration_questions" in calibration and f'"{out}/calibration", 64, seed=0' in calibration
    commands = [shlex.split(line) for line in commands]
    fits, evals = commands[:6], commands[6:]
    written = {}
    for words, (name, flag, value, keep) in zip(fits, [("fitprune-recipe", "--reduction-ratio", r, k) for r, k in
                                                        (("0.75", 64), ("0.9", 26), ("0.95", 13))]
                                                 + [("sparsevlm-calibrate", "--keep", str(k), k) for k in (64, 26, 13)]):
        assert words[:2] == ["llava-patch", name] and words[words.index(flag) + 1] == value
        assert words[words.index("--model") + 1] == str(toy_dir) and words[words.index("--backend") + 1] == "hf"
        assert words[words.index("--data") + 1] == f"{out}/calibration/questions.jsonl"
        written[words[words.index("--output") + 1]] = keep
    assert len(evals) == 2 * 7 and all(words[:2] == ["llava-patch", "eval"] for words in evals)
    outputs = [words[words.index("--output-dir") + 1] for words in evals]
    assert len(set(outputs)) == len(outputs) and all(output.startswith(f"{out}/evals/") for output in outputs)
    for words in evals:  # the sweep's sample and settings
        assert words[words.index("--data-root") + 1] == f"{sweep}/data"
        assert [words[words.index(flag) + 1] for flag in ("--backend", "--dtype", "--batch-size")] == ["hf", "float32", "8"]
    fitted = {}
    for words in evals:
        method = words[words.index("--method") + 1]
        if method != "none":
            (option,) = [words[i + 1] for i, word in enumerate(words) if word == "--option"]
            fitted[option.split("=", 1)[1]] = int(words[words.index("--keep") + 1])
            assert option.split("=")[0] == {"fitprune": "recipe", "sparsevlm": "settings"}[method]
    assert fitted == written  # each row runs the file its fitting writes, at that file's count
    assert table.endswith(f"-m llava_patch.eval.fitted_runs_table --data-root {sweep}/data --output {out}")

    # the default sweep's complete unpruned run is read, not run again
    (sweep / "easyvqa" / "none-0").mkdir(parents=True)
    (sweep / "easyvqa" / "none-0" / "metrics.json").write_text("{}")
    finished = _script("toy/in_llm_baselines.sh", environment=environment)
    nones = [line for line in _lines(finished.stdout) if line.endswith("--method none")]
    assert finished.returncode == 0 and len(nones) == 1 and "--benchmark easyvqa_yesno " in nones[0]

    for variables, message in (({}, "takes no arguments"), ({"CALIBRATION": "many"}, "CALIBRATION=many: expected")):
        finished = _script("toy/in_llm_baselines.sh", *(["--limit", "5"] if not variables else []),
                           environment={**environment, **variables})
        (line,) = _lines(finished.stderr)
        assert finished.returncode == 2 and message in line
