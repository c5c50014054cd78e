# Shared by the experiment scripts: run one evaluation, resumably. Rerunning a script skips a complete
# run (one line, from the runner), resumes a stopped one and refuses a folder of other settings.
#   CKPT       checkpoint directory or hub id (required)
#   DATA       LLaVA's playground/data/eval directory (required)
#   GPUS       GPUs to use, one data-parallel process each (default $CUDA_VISIBLE_DEVICES, else 0)
#   PROCESSES  data-parallel processes (default: one per GPU in $GPUS); on a CPU-only host, e.g.
#              PROCESSES=2 runs two processes joined over gloo, the CPU cores shared between them
#   BACKEND    llava (default: the original LLaVA code the papers ran) or hf
#   RUNS       output root (default runs)
#   BATCH      batch size per process (default 1, as the papers)
#   DRY_RUN    set (e.g. DRY_RUN=1): print each evaluation's `llava-patch eval` command, run nothing
# METHOD no_image with KEEP 0 is the papers' 0-token row: `--method none --empty-image` (the image prompt
# with 0 visual tokens, as FasterVLM's code fed it; docs/reproduce.md), written to <benchmark>/no_image-0.
# One process runs `python -m llava_patch.eval` directly; several run through
# `accelerate launch --multi_gpu --num_processes N` (accelerate's torchrun launcher: without
# --multi_gpu it silently starts one process on a host without several GPUs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# the calling script's usage line names these (a script may set its own after sourcing this file)
USAGE_ARGUMENTS="METHOD KEEP"
USAGE_ENVIRONMENT="[BACKEND=llava|hf]"

usage() {  # usage [MESSAGE]: the message and the calling script's usage line on stderr; exit 2
    [[ $# -eq 0 ]] || echo "$0: $*" >&2
    echo "usage: CKPT=DIR_OR_HUB_ID DATA=DIR [GPUS=0,1 | PROCESSES=2] $USAGE_ENVIRONMENT [RUNS=runs] [BATCH=1]" \
         "$0 ${USAGE_ARGUMENTS:+$USAGE_ARGUMENTS }[llava-patch eval options, e.g. --limit 10]" >&2
    exit 2
}

fail() {  # fail MESSAGE: one line on stderr naming the script; exit 2
    echo "$0: $*" >&2
    exit 2
}

require_environment() {  # CKPT and DATA set, DATA a directory: else one line naming what is missing
    [[ -n "${CKPT:-}" ]] || fail "CKPT is not set: the checkpoint directory or hub id, e.g. CKPT=liuhaotian/llava-v1.5-7b"
    [[ -n "${DATA:-}" ]] || fail "DATA is not set: the benchmark data directory, e.g. DATA=playground/data/eval"
    [[ -d "$DATA" ]] || fail "DATA=$DATA: no such directory"
}

run_eval() {  # run_eval FAMILY BENCHMARK METHOD KEEP [extra llava-patch eval arguments...]
    [[ $# -ge 4 ]] || usage
    local family=$1 benchmark=$2 method=$3 keep=$4
    shift 4
    [[ "$method" =~ ^[A-Za-z0-9_]+$ ]] || usage "METHOD '$method' is not a method name (llava-patch methods lists them)"
    [[ "$keep" =~ ^[0-9]+$ ]] || usage "${USAGE_ARGUMENTS##* } '$keep' is not a number of tokens"
    require_environment
    local output="${RUNS:-runs}/$family/$(basename "$CKPT")/$benchmark/$method-$keep"
    local arguments=(--model "$CKPT" --backend "${BACKEND:-llava}" --benchmark "$benchmark" --data-root "$DATA"
                     --output-dir "$output" --batch-size "${BATCH:-1}" "$@")
    if [[ "$method" == no_image ]]; then  # the 0-token row: the unpruned model, 0 visual tokens for the image
        [[ "$keep" == 0 ]] || usage "METHOD no_image is the 0-token row; its KEEP is 0, not $keep"
        method=none
        arguments+=(--empty-image)
    fi
    if [[ -n "${DRY_RUN:-}" ]]; then  # the command, its budget as the registry gives it for these methods
        local budget=(--keep "$keep")
        [[ "$method" != none ]] || budget=()
        echo "llava-patch eval ${arguments[*]} --method $method${budget[*]:+ ${budget[*]}}"
        return
    fi
    local gpus="${GPUS:-${CUDA_VISIBLE_DEVICES:-0}}"
    local processes="${PROCESSES:-$(awk -F, '{print NF}' <<< "$gpus")}"
    [[ "$processes" =~ ^[1-9][0-9]*$ ]] || fail "PROCESSES=$processes: expected a positive number"
    export CUDA_VISIBLE_DEVICES="$gpus"
    if [[ "$processes" -eq 1 ]]; then
        # in-process: the registry says whether the method takes a budget (the unpruned `none` gets no
        # --keep), then the runner runs in the same interpreter (one start-up; its rc and one-line errors)
        "$PYTHON" -c '
import sys
import llava_patch
from llava_patch.eval.command import main
script, method, keep, *arguments = sys.argv[1:]
try:
    budget = ["--keep", keep] if llava_patch.method_info(method).takes_budget else []
except ValueError as error:
    print(f"{script}: {error}", file=sys.stderr)
    sys.exit(2)
sys.exit(main(arguments + ["--method", method] + budget))' "$0" "$method" "$keep" "${arguments[@]}"
        return
    fi
    # several processes: ask the registry, check the GPUs, pick a free rendezvous port (so scripts on
    # disjoint GPUs of one host can run at once) and, on a CPU-only host, the threads per process
    local launch
    launch=$("$PYTHON" -c '
import socket, sys
import torch
import llava_patch
script, method, processes = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    takes_budget = llava_patch.method_info(method).takes_budget
except ValueError as error:
    print(f"{script}: {error}", file=sys.stderr)
    sys.exit(2)
gpus = torch.cuda.device_count()
if 0 < gpus < processes:
    print(f"{script}: {processes} processes but {gpus} visible GPU(s) (CUDA_VISIBLE_DEVICES={sys.argv[4]})", file=sys.stderr)
    sys.exit(2)
with socket.socket() as free:
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
threads = torch.get_num_threads() // processes if gpus == 0 else 1
print(int(takes_budget), port, max(threads, 1))' "$0" "$method" "$processes" "$gpus") || exit 2
    local takes_budget port threads
    read -r takes_budget port threads <<< "$launch"
    local budget=()
    [[ "$takes_budget" -eq 0 ]] || budget=(--keep "$keep")
    "$PYTHON" -m accelerate.commands.launch --multi_gpu --num_processes "$processes" --num_machines 1 \
        --mixed_precision no --dynamo_backend no --main_process_port "$port" --num_cpu_threads_per_process "$threads" \
        -m llava_patch.eval "${arguments[@]}" --method "$method" "${budget[@]}"
}

require_fitprune_recipes() {  # require_fitprune_recipes KEEP...: $FITPRUNE_RECIPES/fitprune-KEEP.json each, else one line
    local make="make one with \`llava-patch fitprune-recipe\` (see llava-patch fitprune-recipe --help)"
    [[ -n "${FITPRUNE_RECIPES:-}" ]] || fail "FITPRUNE_RECIPES is not set: a directory of FitPrune recipes fitprune-<keep>.json; $make"
    local keep
    for keep in "$@"; do
        [[ -f "$FITPRUNE_RECIPES/fitprune-$keep.json" ]] || fail "$FITPRUNE_RECIPES/fitprune-$keep.json: no such file" \
            "(FitPrune's recipe for $keep tokens, in FITPRUNE_RECIPES=$FITPRUNE_RECIPES); $make"
    done
}

require_sparsevlm_settings() {  # require_sparsevlm_settings KEEP...: $SPARSEVLM_SETTINGS/sparsevlm-KEEP.json each, else one line
    # SparseVLM's scale for each layer-averaged count, calibrated on this model (`llava-patch sparsevlm-calibrate`);
    # SPARSEVLM_CALIBRATE_OPTIONS: further options the calibration needs (LLaVA-NeXT: --option mode=paper)
    local calibrate="llava-patch sparsevlm-calibrate --model ${CKPT:-CKPT} --backend ${BACKEND:-llava}"
    calibrate+="${SPARSEVLM_CALIBRATE_OPTIONS:+ $SPARSEVLM_CALIBRATE_OPTIONS} --data QUESTIONS.jsonl --image-folder DIR"
    local help="(see llava-patch sparsevlm-calibrate --help)"
    [[ -n "${SPARSEVLM_SETTINGS:-}" ]] || fail "SPARSEVLM_SETTINGS is not set: a directory of SparseVLM settings" \
        "sparsevlm-<keep>.json, one per count ($*); make each with \`$calibrate --keep KEEP --output DIR/sparsevlm-KEEP.json\` $help"
    local keep
    for keep in "$@"; do
        [[ -f "$SPARSEVLM_SETTINGS/sparsevlm-$keep.json" ]] || fail "$SPARSEVLM_SETTINGS/sparsevlm-$keep.json: no such file" \
            "(SparseVLM's settings for $keep layer-averaged tokens, in SPARSEVLM_SETTINGS=$SPARSEVLM_SETTINGS); make it with" \
            "\`$calibrate --keep $keep --output $SPARSEVLM_SETTINGS/sparsevlm-$keep.json\` $help"
    done
}

run_step() {  # run_step SCRIPT ARGS...: one evaluation of a sweep; a failure names it and stops the sweep
    local status=0
    "$@" || status=$?
    if [[ "$status" -ne 0 ]]; then
        echo "$0: stopped at ${*#"$ROOT/experiments/"} (exit $status); rerun $0 to resume" >&2
        exit "$status"
    fi
}
