#!/usr/bin/env bash
# LLaVA-NeXT (original v1.6 checkpoint) on one benchmark, named by this script's file name, in the
# FasterVLM paper's layout (MODE=paper: fixed 672×672 grid, 5 crops; MODE=native: the checkpoint's own).
# Usage: CKPT=liuhaotian/llava-v1.6-vicuna-7b DATA=playground/data/eval [MODE=paper] \
#   experiments/v1_6/pope.sh METHOD KEEP_PER_CROP [--option NAME=VALUE ...]
source "$(dirname "$0")/../common.sh"
method=$1 keep=$2
shift 2
run_eval "v1_6-${MODE:-paper}" "$(basename "$0" .sh)" "$method" "$keep" --option "mode=${MODE:-paper}" "$@"
