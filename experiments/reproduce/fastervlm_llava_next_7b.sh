#!/usr/bin/env bash
# FasterVLM's LLaVA-NeXT-7B table, every row, in the paper's layout (MODE=paper: a fixed 672×672 grid,
# 5 crops of 576 patches, 2880 visual tokens): the unpruned model; FastV, SparseVLM (no 95% row) and
# FasterVLM at 25/50/75/90/95% pruning (2160/1440/720/290/145 tokens: FasterVLM keeps 432/288/144/58/29
# per crop); the 0-token (100%) row; on its ten benchmarks. 10 × 16 = 160 runs.
#   CKPT=liuhaotian/llava-v1.6-vicuna-7b DATA=playground/data/eval SPARSEVLM_SETTINGS=settings/llava-v1.6-vicuna-7b \
#     GPUS=0,1,2,3,4,5,6,7 experiments/reproduce/fastervlm_llava_next_7b.sh
# SPARSEVLM_SETTINGS: a directory holding SparseVLM's settings calibrated on this model in the paper layout,
# sparsevlm-2160.json ... sparsevlm-290.json (`llava-patch sparsevlm-calibrate --option mode=paper` makes one).
# Options after the script name go to every run (e.g. --limit 10 for a smoke run of the sweep);
# DRY_RUN=1 lists the runs' commands without running them.
# Resumable: rerun the same command after a stop; complete runs are skipped (one line each), a stopped
# one resumes, the rest run; it exits 0 once every run is complete. `llava-patch tables --runs runs`
# then fills the table (docs/reproduce.md).
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS=""
USAGE_ENVIRONMENT="SPARSEVLM_SETTINGS=DIR [BACKEND=llava|hf]"
require_environment
[[ "${MODE:-paper}" == paper ]] || fail "MODE=$MODE: FasterVLM's table is the paper layout (MODE=paper)"
SPARSEVLM_CALIBRATE_OPTIONS="--option mode=paper" require_sparsevlm_settings 2160 1440 720 290
benchmarks=(vqav2 gqa vizwiz sqa textvqa pope mme mmbench mmbench_cn mmvet)
# LLM-stage methods (FastV, SparseVLM) take one budget per sample, over all 2880 visual tokens.
# FastV as FasterVLM ran it: FastV's lmms-eval fastv_kvcache.py keeps int(N·(1−R)) tokens (it is written
# for N = 576; FasterVLM's adaptation to LLaVA-NeXT is unpublished, so N = 2880 is assumed): 288 and 144
# at 90/95% where the table prints 290/145 (2160/1440/720 are exact). Those two runs keep 288/144 and
# name the printed count (--printed-tokens), which files them in the 90/95% rows; the manifest keeps both.
fastv=("2160" "1440" "720" "288 --printed-tokens 290" "144 --printed-tokens 145")
# SparseVLM takes the table's "# Token" as its budget (a layer-averaged count for it); its scale for it comes
# from its settings file, calibrated in the paper layout (the authors publish none for LLaVA-NeXT).
for benchmark in "${benchmarks[@]}"; do
    script="$ROOT/experiments/v1_6/$benchmark.sh"
    run_step "$script" none 576 "$@"
    for budget in "${fastv[@]}"; do
        # shellcheck disable=SC2086  # "288 --printed-tokens 290": the budget and its printed count
        run_step "$script" fastv $budget "$@"
    done
    for keep in 2160 1440 720 290; do
        run_step "$script" sparsevlm "$keep" --printed-tokens "$keep" --option "settings=$SPARSEVLM_SETTINGS/sparsevlm-$keep.json" "$@"
    done
    for keep in 432 288 144 58 29; do  # per crop
        run_step "$script" fastervlm "$keep" "$@"
    done
    run_step "$script" no_image 0 "$@"
done
echo "answers, metrics.json and manifest.json per run are under ${RUNS:-runs}/v1_6-paper/$(basename "$CKPT")/;" \
     "the table beside the published one: llava-patch tables --runs ${RUNS:-runs}"
