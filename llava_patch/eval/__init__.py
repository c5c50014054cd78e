"""Evaluation with the papers' protocol (LLaVA's own eval entry points; docs/protocol.md): benchmark question
files in LLaVA's `playground/data/eval/<benchmark>` layout, the vicuna_v1 prompt, pad preprocessing,
greedy decoding, resumable and shardable runs, answers in LLaVA's answer-file format."""
