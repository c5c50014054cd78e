"""The handle is the output: `last_*` describe the last call only (reset at every call, read-only),
`get_handle` finds it, and an LLM-stage method plugs in through `LanguageModelMethod` alone — on both
backends, with the adapter telling it where each prefill's visual tokens are."""

import pytest

import llava_patch
from llava_patch.methods.base import LanguageModelMethod
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import NUM_PATCHES, random_image
from llava_patch.registry import _METHODS, register_method

QUESTIONS = ["what is in the image ?", "w1 w2 w3 describe the image"]


@pytest.fixture(params=["hf", "llava"])
def vlm(request, tiny_original):
    original, converted = tiny_original
    return load_model(original if request.param == "llava" else converted, backend=request.param, device="cpu")


def _images():
    return [random_image(seed, size=(40 + 11 * seed, 90 - 7 * seed)) for seed in range(2)]


def test_last_fields_describe_the_last_call_only(vlm):
    with llava_patch.apply(vlm.model, "fastervlm", keep=7) as handle:
        assert handle.last_visual_tokens == [] and handle.last_selection == []
        vlm.generate(_images(), QUESTIONS, max_new_tokens=3)
        assert handle.last_visual_tokens == [7, 7] and len(handle.last_selection) == 2
        vlm.generate(None, QUESTIONS, max_new_tokens=3)  # text only: nothing reached the LLM from images
        assert handle.last_visual_tokens == [] and handle.last_selection == [] and handle.last_scores == []


def test_last_fields_are_read_only(tiny_llava):
    model, _ = tiny_llava
    handle = llava_patch.apply(model, "fastervlm", keep=7)
    for name in ("last_selection", "last_scores", "last_visual_tokens", "last_equivalent_visual_tokens"):
        with pytest.raises(AttributeError):
            setattr(handle, name, [])


def test_get_handle_finds_the_patch_and_none_after_remove(tiny_llava):
    model, _ = tiny_llava
    assert llava_patch.get_handle(model) is None
    handle = llava_patch.apply(model, "grid", keep=5)
    assert llava_patch.get_handle(model) is handle
    handle.remove()
    assert llava_patch.get_handle(model) is None


class _PositionProbe(LanguageModelMethod):
    """An LLM-stage method that prunes nothing and reports what the adapter told it."""

    def attach(self, language_model, keep, reduction_ratio, recorder):
        self.language_model, self.recorder, self.masks = language_model, recorder, []
        original = language_model.forward

        def forward(*args, **kwargs):
            if self.masks and kwargs.get("past_key_values") is not None and kwargs["past_key_values"].get_seq_length() == 0:
                counts = [int(row.sum()) for row in self.masks[-1]]
                self.recorder.record([], [], counts, [float(c) for c in counts])
            return original(*args, **kwargs)

        language_model.forward = forward

    def detach(self):
        del self.language_model.forward

    def visual_positions(self, mask):
        self.masks.append(mask.clone())

    def tokens_kept(self, visual_tokens):
        return visual_tokens


@pytest.fixture
def position_probe():
    register_method("position_probe")(_PositionProbe)
    yield
    del _METHODS["position_probe"]


def test_an_llm_stage_method_gets_the_visual_positions_on_both_backends(vlm, position_probe):
    assert llava_patch.method_info("position_probe").stage == "llm"
    language_model = vlm.model.model.language_model if vlm.backend == "hf" else vlm.model.get_model()
    with llava_patch.apply(vlm.model, "position_probe", keep=3) as handle:
        method = handle.method_object
        assert "forward" in vars(language_model)
        answers = vlm.generate(_images(), QUESTIONS, max_new_tokens=3)
        (mask,) = method.masks  # one prefill, one mask
        assert [int(row.sum()) for row in mask] == [NUM_PATCHES, NUM_PATCHES]  # the vision side kept every patch
        assert handle.last_visual_tokens == [NUM_PATCHES, NUM_PATCHES]
        assert handle.last_equivalent_visual_tokens == [float(NUM_PATCHES)] * 2
    assert "forward" not in vars(language_model)
    assert vlm.generate(_images(), QUESTIONS, max_new_tokens=3) == answers  # it pruned nothing
