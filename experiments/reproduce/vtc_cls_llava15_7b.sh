#!/usr/bin/env bash
# VTC-CLS's LLaVA-1.5-7B table: FastV, PruMerge+ and VTC-CLS at 256/128/64 tokens and the unpruned model.
#   CKPT=liuhaotian/llava-v1.5-7b DATA=playground/data/eval GPUS=0,1,2,3 experiments/reproduce/vtc_cls_llava15_7b.sh
# Every row of the table, on its eight benchmarks: 8 × 10 = 80 runs. Options after the script name go to
# every run (e.g. --limit 10 for a smoke run of the sweep); DRY_RUN=1 lists the runs' commands without
# running them.
# Resumable: rerun the same command after a stop; complete runs are skipped (one line each), a stopped
# one resumes, the rest run; it exits 0 once every run is complete. `llava-patch tables --runs runs`
# then fills the table (docs/reproduce.md).
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS=""
require_environment
benchmarks=(sqa gqa textvqa pope mmbench mmbench_cn mmvet seed)
for benchmark in "${benchmarks[@]}"; do
    run_step "$ROOT/experiments/v1_5/$benchmark.sh" none 576 "$@"
    for method in fastv prumerge_plus vtc_cls; do
        for keep in 256 128 64; do
            run_step "$ROOT/experiments/v1_5/$benchmark.sh" "$method" "$keep" "$@"
        done
    done
done
echo "answers, metrics.json and manifest.json per run are under ${RUNS:-runs}/v1_5/$(basename "$CKPT")/;" \
     "the table beside the published one: llava-patch tables --runs ${RUNS:-runs}"
