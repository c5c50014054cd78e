#!/usr/bin/env bash
# Video-LLaVA zero-shot video QA on one benchmark, named by this script's file name (video/msvd.sh,
# msrvtt.sh, tgif.sh, activitynet.sh link here): the first 1 000 QA pairs, 8 frames, temperature 0.1;
# scored by the LLM judge when OPENAI_API_KEY (and OPENAI_BASE_URL) are set.
# Usage: CKPT=LanguageBind/Video-LLaVA-7B-hf DATA=eval [GPUS=0,1 | PROCESSES=2] experiments/video/msvd.sh METHOD KEEP_PER_FRAME
#   (DATA holds GPT_Zero_Shot_QA/<MSVD|MSRVTT|TGIF|Activitynet>_Zero_Shot_QA/{test_q.json,test_a.json,videos/})
# Rerunning it skips a complete run, resumes a stopped one (see experiments/common.sh).
source "$(dirname "$0")/../common.sh"
USAGE_ARGUMENTS="METHOD KEEP_PER_FRAME"
USAGE_ENVIRONMENT="[OPENAI_API_KEY=... OPENAI_BASE_URL=...]"
BACKEND=hf run_eval video "$(basename "$0" .sh)" "$@"
