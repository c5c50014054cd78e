# Shared by the experiment scripts: run one evaluation through `accelerate launch` on the GPUs listed
# in $GPUS (or $CUDA_VISIBLE_DEVICES; default 0), one data-parallel process per GPU.
#   CKPT     checkpoint directory or hub id (required)
#   DATA     LLaVA's playground/data/eval directory (required)
#   BACKEND  llava (default: the original LLaVA code the papers ran) or hf
#   RUNS     output root (default runs)
#   BATCH    batch size per process (default 1, as the papers)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

run_eval() {  # run_eval FAMILY BENCHMARK METHOD KEEP [extra llava-patch eval arguments...]
    local family=$1 benchmark=$2 method=$3 keep=$4
    shift 4
    : "${CKPT:?set CKPT to the checkpoint}" "${DATA:?set DATA to playground/data/eval}"
    local gpus="${GPUS:-${CUDA_VISIBLE_DEVICES:-0}}"
    local processes
    processes=$(awk -F, '{print NF}' <<< "$gpus")
    local budget=(--keep "$keep")
    # a method that takes no budget (the unpruned `none`) gets no --keep: ask the registry
    "$PYTHON" -c 'import sys, llava_patch; sys.exit(0 if llava_patch.method_info(sys.argv[1]).takes_budget else 1)' \
        "$method" || budget=()
    local output="${RUNS:-runs}/$family/$(basename "$CKPT")/$benchmark/$method-$keep"
    CUDA_VISIBLE_DEVICES="$gpus" "$PYTHON" -m accelerate.commands.launch --num_processes "$processes" \
        -m llava_patch.eval --model "$CKPT" --backend "${BACKEND:-llava}" --benchmark "$benchmark" \
        --data-root "$DATA" --output-dir "$output" --method "$method" "${budget[@]}" \
        --batch-size "${BATCH:-1}" "$@"
}
