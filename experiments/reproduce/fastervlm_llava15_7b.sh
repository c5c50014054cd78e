#!/usr/bin/env bash
# FasterVLM's LLaVA-1.5-7B table: FastV and FasterVLM at 25/50/75/90/95% pruning (432/288/144/58/29
# tokens per image) and the unpruned model, on its ten benchmarks.
#   CKPT=liuhaotian/llava-v1.5-7b DATA=playground/data/eval GPUS=0,1,2,3,4,5,6,7 experiments/reproduce/fastervlm_llava15_7b.sh
# Options after the script name go to every run (e.g. --limit 10 for a smoke run of the sweep).
# Resumable: rerun the same command after a stop; complete runs are skipped (one line each), a stopped
# one resumes, the rest run; it exits 0 once every run is complete.
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS=""
require_environment
benchmarks=(vqav2 gqa vizwiz sqa textvqa pope mme mmbench mmbench_cn seed)
for benchmark in "${benchmarks[@]}"; do
    run_step "$ROOT/experiments/v1_5/$benchmark.sh" none 576 "$@"
    for method in fastv fastervlm; do
        for keep in 432 288 144 58 29; do
            run_step "$ROOT/experiments/v1_5/$benchmark.sh" "$method" "$keep" "$@"
        done
    done
done
echo "answers, metrics.json and manifest.json per run are under ${RUNS:-runs}/v1_5/$(basename "$CKPT")/;" \
     "the table beside the published one: llava-patch tables --runs ${RUNS:-runs}"
