"""Evaluation with the papers' protocol (LLaVA's own eval entry points; docs/protocol.md): benchmark question
files in LLaVA's `playground/data/eval/<benchmark>` layout, the vicuna_v1 prompt, pad preprocessing,
greedy decoding, resumable and shardable runs, answers in LLaVA's answer-file format."""

HF_MODEL_ID, LLAVA_MODEL_ID = "llava_patch_hf", "llava_patch"


def lmms_eval_models():
    """The lmms-eval entry point (group `lmms_eval.models`): our two models, named by class path so that
    lmms-eval imports `llava_patch.eval.harness` (and torch) only when one of them is used."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=HF_MODEL_ID, simple_class_path="llava_patch.eval.harness.LlavaPatchHF",
                          chat_class_path="llava_patch.eval.harness.LlavaPatchHFChat"),
            ModelManifest(model_id=LLAVA_MODEL_ID, simple_class_path="llava_patch.eval.harness.LlavaPatchLlava")]
