#!/usr/bin/env bash
# SparseVLM and FitPrune, the two in-LLM baselines whose budgets are fitted to the model, on the toy LLaVA
# (CPU), end to end through their fitting commands, evaluated on the default toy sweep's easy-VQA sample:
#   experiments/toy/in_llm_baselines.sh        # about 15 min on a 2-core CPU (experiments/toy/in_llm_baselines/)
# Steps, each skipped when its output exists (nothing is overwritten; rerun to resume after a stop):
#   1. calibration questions: CALIBRATION questions (one per image, a stratified sample) of easy-VQA's
#      *training* split, asked as the benchmarks ask them, in LLaVA's question JSONL + an image folder
#      (llava_patch.eval.easyvqa.write_calibration_questions) → $OUT/calibration/
#   2. fitting, on those questions: `llava-patch fitprune-recipe` at FLOPs reductions 0.75/0.9/0.95
#      → $OUT/fitted/fitprune-<keep>.json, keep = round(256·(1−R)) = 64/26/13; `llava-patch
#      sparsevlm-calibrate --keep 64/26/13` → $OUT/fitted/sparsevlm-<keep>.json. Each command's output
#      (progress bars left out) goes to the .log beside its file. A fitting command that refuses (exit 2:
#      e.g. a SparseVLM target below what its smallest scale keeps) is recorded in <file>.refused, the
#      script goes on, and that row runs SparseVLM at its smallest setting (scale 0, bias 0) instead,
#      labelled so in the table; delete the .refused file to try again.
#   3. `llava-patch eval` of each (method, keep) on both toy benchmarks (easyvqa, easyvqa_yesno) over the
#      default sweep's sample ($SWEEP/data: the 9 easy-VQA test images of `make reproduce`, built as the
#      sweep builds it if missing), with the sweep's settings (hf backend, float32, batch 8)
#      → $OUT/evals/...; the unpruned rows are the sweep's own runs ($SWEEP/<benchmark>/none-0) when
#      complete, else `none` is run here
#   4. $OUT/results.csv and results.md (python -m llava_patch.eval.fitted_runs_table): per row the printed
#      and measured visual tokens, the headline with the sweep's 95% bootstrap interval, % of unpruned.
# Every step's wall time is appended to $OUT/times.log.
#   OUT          output folder (default runs/toy/in_llm_baselines)
#   SWEEP        the default toy sweep's folder (default runs/reproduce/toy, as `make reproduce` writes it)
#   CALIBRATION  calibration questions (default 64)
#   BATCH        evaluation batch size (default 8, as the sweep)
#   DRY_RUN      set (e.g. DRY_RUN=1): print every step's command, run nothing, write nothing
source "$(dirname "$0")/../common.sh"
OUT="${OUT:-runs/toy/in_llm_baselines}"
SWEEP="${SWEEP:-runs/reproduce/toy}"
CALIBRATION="${CALIBRATION:-64}"
BATCH="${BATCH:-8}"
[[ $# -eq 0 ]] || fail "takes no arguments (settings: OUT, SWEEP, CALIBRATION, BATCH, DRY_RUN; see its header)"
[[ "$CALIBRATION" =~ ^[1-9][0-9]*$ ]] || fail "CALIBRATION=$CALIBRATION: expected a positive number of questions"
[[ "$BATCH" =~ ^[1-9][0-9]*$ ]] || fail "BATCH=$BATCH: expected a positive batch size"
budgets=("0.75 64" "0.9 26" "0.95 13")  # FLOPs/pruning ratio R and keep = round(256·(1−R)) of the toy's 256 tokens
benchmarks=(easyvqa easyvqa_yesno)
START=$SECONDS

dry() { [[ -n "${DRY_RUN:-}" ]]; }

show() {  # show COMMAND...: the command line as a user would type it (llava-patch for the package's CLI)
    local words=("$@")
    if [[ "${words[0]}" == "$PYTHON" && "${words[1]:-}" == -m ]]; then
        case "${words[2]}" in
            llava_patch.cli) words=(llava-patch "${words[@]:3}") ;;
            llava_patch.eval) words=(llava-patch eval "${words[@]:3}") ;;
        esac
    elif [[ "${words[0]}" == "$PYTHON" ]]; then
        words=(python "${words[@]:1}")
    fi
    echo "${words[*]}"
}

timed() {  # timed NAME COMMAND...: run it, append its wall time and exit status to $OUT/times.log
    local name=$1 begin=$SECONDS status=0
    shift
    "$@" || status=$?
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $name $((SECONDS - begin))s exit $status" >> "$OUT/times.log"
    return "$status"
}

fit() {  # fit OUTPUT COMMAND...: run a fitting command unless OUTPUT (or its refusal) exists; log its output
    local output=$1
    shift
    show "$@"
    if dry; then
        return
    elif [[ -f "$output" ]]; then
        echo "  $output exists; skipped"
        return
    elif [[ -f "$output.refused" ]]; then
        echo "  $output.refused exists (the command refused; delete it to try again); skipped"
        return
    fi
    local status=0
    # the console keeps the progress bars; the .log only what the command concluded
    timed "$(basename "$output" .json)" "$@" 2>&1 | tee "$output.raw" || status=$?
    tr '\r' '\n' < "$output.raw" | grep -avE $'\\[[0-9]+:[0-9]{2}|^(\e\\[A|[[:space:]])*$' > "$output.log" || true
    rm -f "$output.raw"
    if [[ "$status" -eq 2 ]]; then  # a refusal (one line naming why): recorded, the script goes on
        { show "$@"; cat "$output.log"; } > "$output.refused"
        echo "$0: recorded the refusal in $output.refused; going on" >&2
    elif [[ "$status" -ne 0 ]]; then
        echo "$0: stopped at $(show "$@") (exit $status); rerun $0 to resume" >&2
        exit "$status"
    fi
}

evaluate() {  # evaluate BENCHMARK OUTPUT_DIR METHOD [eval options...]: one resumable run
    local benchmark=$1 output=$2 method=$3
    shift 3
    local command=("$PYTHON" -m llava_patch.eval --model "$MODEL" --backend hf --benchmark "$benchmark"
                   --data-root "$DATA" --output-dir "$output" --batch-size "$BATCH" --dtype float32
                   --method "$method" "$@")
    if dry; then
        show "${command[@]}"
        return
    fi
    local status=0
    timed "$benchmark/$(basename "$output")" "${command[@]}" || status=$?
    [[ "$status" -eq 0 ]] || { echo "$0: stopped at $(show "${command[@]}") (exit $status); rerun $0 to resume" >&2; exit "$status"; }
}

# the toy checkpoint (assembled once into its cache) and the default sweep's easy-VQA sample
if dry; then
    MODEL=$("$PYTHON" -c 'from llava_patch.models.toy import toy_checkpoint; print(toy_checkpoint())')
    DATA="$SWEEP/data"
    [[ -d "$DATA" ]] || echo "# the sweep's sample, built as \`make reproduce\` builds it: $DATA"
else
    mkdir -p "$OUT/fitted"
    read -r MODEL DATA < <("$PYTHON" -c '
import sys
from pathlib import Path
from llava_patch.eval.sweep import TOY_IMAGES, toy_sample
print(*toy_sample(Path(sys.argv[1]), TOY_IMAGES))' "$SWEEP" | tail -n 1)
    [[ -d "$DATA" ]] || fail "could not prepare the sweep's sample under $SWEEP"
    echo "model $MODEL; evaluation data $DATA; output $OUT"
fi

# 1. calibration questions from easy-VQA's training split
calibration="$OUT/calibration"
command=("$PYTHON" -c 'import sys; from llava_patch.eval.easyvqa import write_calibration_questions as write
print("wrote", write(sys.argv[1], int(sys.argv[2]), seed=0))' "$calibration" "$CALIBRATION")
if dry; then
    echo "python -c 'from llava_patch.eval.easyvqa import write_calibration_questions; write_calibration_questions(\"$calibration\", $CALIBRATION, seed=0)'"
elif [[ -f "$calibration/questions.jsonl" ]]; then
    held=$(grep -c . "$calibration/questions.jsonl")
    [[ "$held" -eq "$CALIBRATION" ]] || fail "$calibration holds $held calibration questions, not CALIBRATION=$CALIBRATION; choose another OUT"
    echo "  $calibration/questions.jsonl exists ($held questions); skipped"
else
    timed calibration "${command[@]}"
fi

# 2. fitting
fitted="$OUT/fitted"
data=(--model "$MODEL" --backend hf --data "$calibration/questions.jsonl" --image-folder "$calibration/images")
for budget in "${budgets[@]}"; do
    read -r ratio keep <<< "$budget"
    fit "$fitted/fitprune-$keep.json" "$PYTHON" -m llava_patch.cli fitprune-recipe "${data[@]}" \
        --reduction-ratio "$ratio" --output "$fitted/fitprune-$keep.json"
done
for budget in "${budgets[@]}"; do
    read -r ratio keep <<< "$budget"
    fit "$fitted/sparsevlm-$keep.json" "$PYTHON" -m llava_patch.cli sparsevlm-calibrate "${data[@]}" \
        --keep "$keep" --output "$fitted/sparsevlm-$keep.json"
done

# 3. evaluations (rows for the table: benchmark, method, ratio, run folder, note)
rows=()
for benchmark in "${benchmarks[@]}"; do
    unpruned="$SWEEP/$benchmark/none-0"
    if [[ -f "$unpruned/metrics.json" ]]; then
        echo "  $benchmark: the unpruned row is the default sweep's run $unpruned"
    else
        unpruned="$OUT/evals/$benchmark/none"
        evaluate "$benchmark" "$unpruned" none
    fi
    rows+=("$benchmark	none	0	$unpruned	")
    for budget in "${budgets[@]}"; do
        read -r ratio keep <<< "$budget"
        output="$OUT/evals/$benchmark/fitprune-$keep"
        evaluate "$benchmark" "$output" fitprune --keep "$keep" --printed-tokens "$keep" \
            --option "recipe=$fitted/fitprune-$keep.json"
        rows+=("$benchmark	fitprune	$ratio	$output	")
    done
    for budget in "${budgets[@]}"; do
        read -r ratio keep <<< "$budget"
        if [[ -f "$fitted/sparsevlm-$keep.json.refused" ]]; then  # the target is out of reach: the smallest setting
            output="$OUT/evals/$benchmark/sparsevlm-$keep-scale0"
            evaluate "$benchmark" "$output" sparsevlm --keep "$keep" --printed-tokens "$keep" \
                --option scale=0 --option bias=0
            rows+=("$benchmark	sparsevlm	$ratio	$output	SparseVLM's smallest setting: the target is out of reach (sparsevlm-$keep.json.refused)")
        else
            output="$OUT/evals/$benchmark/sparsevlm-$keep"
            evaluate "$benchmark" "$output" sparsevlm --keep "$keep" --printed-tokens "$keep" \
                --option "settings=$fitted/sparsevlm-$keep.json"
            rows+=("$benchmark	sparsevlm	$ratio	$output	")
        fi
    done
done

# 4. the table
table=("$PYTHON" -m llava_patch.eval.fitted_runs_table --data-root "$DATA" --output "$OUT")
if dry; then
    show "${table[@]}"
    exit 0
fi
printf '%s\n' "${rows[@]}" | timed table "${table[@]}"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) this invocation $((SECONDS - START))s" >> "$OUT/times.log"
echo "wrote $OUT/results.csv and $OUT/results.md ($((SECONDS - START)) s; step times in $OUT/times.log)"
