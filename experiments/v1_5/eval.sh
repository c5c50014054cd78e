#!/usr/bin/env bash
# LLaVA-1.5 on one benchmark, named by this script's file name (v1_5/pope.sh, v1_5/gqa.sh, ... link here).
# Usage: CKPT=liuhaotian/llava-v1.5-7b DATA=playground/data/eval [GPUS=0,1 | PROCESSES=2] [BACKEND=llava|hf] \
#   experiments/v1_5/pope.sh METHOD KEEP [--option NAME=VALUE ...]     (KEEP: tokens per image: 576/432/288/144/58/29)
# Rerunning it skips a complete run, resumes a stopped one (see experiments/common.sh).
source "$(dirname "$0")/../common.sh"
run_eval v1_5 "$(basename "$0" .sh)" "$@"
