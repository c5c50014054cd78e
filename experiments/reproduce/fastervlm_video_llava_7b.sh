#!/usr/bin/env bash
# FasterVLM's Video-LLaVA-7B table, every row: the unpruned model (8 frames × 256 = 2048 visual tokens);
# FastV and FasterVLM at 25/50/75/90/95% pruning (1536/1024/512/208/104 tokens: FasterVLM keeps
# 192/128/64/26/13 per frame); the 0-token (100%) row; on TGIF, MSVD, MSRVTT and ActivityNet (the first
# 1 000 QA pairs each). 4 × 12 = 48 runs. Accuracy and score come from the LLM judge: set OPENAI_API_KEY
# (and OPENAI_BASE_URL), or score later with `llava-patch score`.
#   CKPT=LanguageBind/Video-LLaVA-7B-hf DATA=eval GPUS=0,1,2,3 experiments/reproduce/fastervlm_video_llava_7b.sh
# Options after the script name go to every run (e.g. --limit 10 for a smoke run of the sweep);
# DRY_RUN=1 lists the runs' commands without running them.
# Resumable: rerun the same command after a stop; complete runs are skipped (one line each), a stopped
# one resumes, the rest run; it exits 0 once every run is complete. `llava-patch tables --runs runs`
# then fills the table (docs/reproduce.md).
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS=""
USAGE_ENVIRONMENT="[OPENAI_API_KEY=... OPENAI_BASE_URL=...]"
require_environment
benchmarks=(tgif msvd msrvtt activitynet)
# FastV takes one budget per video, over all its frames' tokens. FastV as FasterVLM ran it (FastV's
# lmms-eval fastv_kvcache.py in Video-LLaVA, FasterVLM issue #9) keeps int(N·(1−R)) tokens (the file is
# written for N = 576; the adaptation to Video-LLaVA is unpublished, so N = 2048 is assumed): 204 and 102
# at 90/95% where the table prints 208/104 (1536/1024/512 are exact). Those two runs keep 204/102 and
# name the printed count (--printed-tokens), which files them in the 90/95% rows; the manifest keeps both.
fastv=("1536" "1024" "512" "204 --printed-tokens 208" "102 --printed-tokens 104")
for benchmark in "${benchmarks[@]}"; do
    script="$ROOT/experiments/video/$benchmark.sh"
    run_step "$script" none 256 "$@"
    for budget in "${fastv[@]}"; do
        # shellcheck disable=SC2086  # "204 --printed-tokens 208": the budget and its printed count
        run_step "$script" fastv $budget "$@"
    done
    for keep in 192 128 64 26 13; do  # per frame
        run_step "$script" fastervlm "$keep" "$@"
    done
    run_step "$script" no_image 0 "$@"
done
echo "answers, metrics.json and manifest.json per run are under ${RUNS:-runs}/video/$(basename "$CKPT")/;" \
     "the table beside the published one: llava-patch tables --runs ${RUNS:-runs}"
