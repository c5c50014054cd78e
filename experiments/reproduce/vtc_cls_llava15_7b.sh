#!/usr/bin/env bash
# VTC-CLS's LLaVA-1.5-7B table: FastV, PruMerge+ and VTC-CLS at 256/128/64 tokens and the unpruned model.
#   CKPT=liuhaotian/llava-v1.5-7b DATA=playground/data/eval GPUS=0,1,2,3 experiments/reproduce/vtc_cls_llava15_7b.sh
set -euo pipefail
here="$(dirname "$0")"
benchmarks=(sqa gqa textvqa pope mmbench mmbench_cn mmvet seed)
for benchmark in "${benchmarks[@]}"; do
    "$here/../v1_5/$benchmark.sh" none 576
    for method in fastv prumerge_plus vtc_cls; do
        for keep in 256 128 64; do
            "$here/../v1_5/$benchmark.sh" "$method" "$keep"
        done
    done
done
echo "answers, metrics.json and manifest.json per run are under ${RUNS:-runs}/v1_5/$(basename "$CKPT")/"
