#!/usr/bin/env bash
# FasterVLM's LLaVA-1.5-7B table, every row: the unpruned model; FastV, FitPrune, SparseVLM (no 95% row)
# and FasterVLM at 25/50/75/90/95% pruning (432/288/144/58/29 tokens per image); the 0-token (100%) row;
# on its ten benchmarks. 10 × 21 = 210 runs.
#   CKPT=liuhaotian/llava-v1.5-7b DATA=playground/data/eval FITPRUNE_RECIPES=recipes/llava-v1.5-7b \
#     SPARSEVLM_SETTINGS=settings/llava-v1.5-7b GPUS=0,1,2,3,4,5,6,7 experiments/reproduce/fastervlm_llava15_7b.sh
# FITPRUNE_RECIPES: a directory holding FitPrune's per-layer recipes fitprune-432.json, fitprune-144.json
# and fitprune-29.json (`llava-patch fitprune-recipe --help` makes one; the 288 and 58 rows run the
# authors' own published recipes for 50 and 90%). SPARSEVLM_SETTINGS: a directory holding SparseVLM's
# settings calibrated on this model, sparsevlm-432.json ... sparsevlm-58.json (`llava-patch sparsevlm-calibrate
# --help` makes one). Options after the script name go to every run (e.g.
# --limit 10 for a smoke run of the sweep); DRY_RUN=1 lists the runs' commands without running them.
# Resumable: rerun the same command after a stop; complete runs are skipped (one line each), a stopped
# one resumes, the rest run; it exits 0 once every run is complete. `llava-patch tables --runs runs`
# then fills the table (docs/reproduce.md).
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS=""
USAGE_ENVIRONMENT="FITPRUNE_RECIPES=DIR SPARSEVLM_SETTINGS=DIR [BACKEND=llava|hf]"
require_environment
require_fitprune_recipes 432 144 29
require_sparsevlm_settings 432 288 144 58
benchmarks=(vqav2 gqa vizwiz sqa textvqa pope mme mmbench mmbench_cn mmvet)
# FastV as FasterVLM ran it (FastV's lmms-eval fastv_kvcache.py, K=2): the file keeps int(576·(1−R))
# tokens, 57 and 28 at 90/95% where the table prints 58/29 (432/288/144 are exact). Those two runs keep
# 57/28 and name the printed count (--printed-tokens), which files them in the 90/95% rows; the manifest
# keeps both (printed_tokens, measured_visual_tokens).
fastv=("432" "288" "144" "57 --printed-tokens 58" "28 --printed-tokens 29")
# SparseVLM and FitPrune take the table's "# Token" as their budget (a layer-averaged count for them):
# SparseVLM's scale for it comes from its calibrated settings file (the authors publish none for these counts).
for benchmark in "${benchmarks[@]}"; do
    script="$ROOT/experiments/v1_5/$benchmark.sh"
    run_step "$script" none 576 "$@"
    for budget in "${fastv[@]}"; do
        # shellcheck disable=SC2086  # "57 --printed-tokens 58": the budget and its printed count
        run_step "$script" fastv $budget "$@"
    done
    # FitPrune: its authors publish LLaVA-1.5-7B recipes for 50 and 90% (the method loads them when no
    # recipe is given); 25, 75 and 95% need fitted ones.
    for keep in 432 288 144 58 29; do
        recipe=(--option "recipe=$FITPRUNE_RECIPES/fitprune-$keep.json")
        [[ $keep == 288 || $keep == 58 ]] && recipe=()
        run_step "$script" fitprune "$keep" --printed-tokens "$keep" "${recipe[@]}" "$@"
    done
    for keep in 432 288 144 58; do
        run_step "$script" sparsevlm "$keep" --printed-tokens "$keep" --option "settings=$SPARSEVLM_SETTINGS/sparsevlm-$keep.json" "$@"
    done
    for keep in 432 288 144 58 29; do
        run_step "$script" fastervlm "$keep" "$@"
    done
    run_step "$script" no_image 0 "$@"
done
echo "answers, metrics.json and manifest.json per run are under ${RUNS:-runs}/v1_5/$(basename "$CKPT")/;" \
     "the table beside the published one: llava-patch tables --runs ${RUNS:-runs}"
