#!/usr/bin/env bash
# LLaVA-NeXT (original v1.6 checkpoint) on one benchmark, named by this script's file name, in the
# FasterVLM paper's layout (MODE=paper: fixed 672×672 grid, 5 crops; MODE=native: the checkpoint's own).
# Usage: CKPT=liuhaotian/llava-v1.6-vicuna-7b DATA=playground/data/eval [MODE=paper] [GPUS=0,1 | PROCESSES=2] \
#   experiments/v1_6/pope.sh METHOD KEEP_PER_CROP [--option NAME=VALUE ...]
# Rerunning it skips a complete run, resumes a stopped one (see experiments/common.sh).
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS="METHOD KEEP_PER_CROP"
USAGE_ENVIRONMENT="[MODE=paper|native] [BACKEND=llava|hf]"
mode="${MODE:-paper}"
[[ $# -ge 2 ]] || usage
[[ "$mode" == paper || "$mode" == native ]] || fail "MODE=$mode: expected paper or native"
method=$1 keep=$2
shift 2
run_eval "v1_6-$mode" "$(basename "$0" .sh)" "$method" "$keep" --option "mode=$mode" "$@"
