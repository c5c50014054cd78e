"""The toy LLaVA: its conversion from the shipped parts, its loading through the common loader, its
accuracy, the patch on it, and the training's packed sequences."""

import numpy as np
import pytest
import torch
from PIL import Image

import llava_patch
from llava_patch.eval.easyvqa import training_questions
from llava_patch.models import toy, toy_parts
from llava_patch.models.loading import HFVLM, load_model
from llava_patch.training.projector import _batch, answer_loss

SAMPLE = 60  # short-answer questions of the accuracy floor
# Measured with the committed projector: 37/60 unpruned on this sample (greedy, float32, CPU); the floor
# leaves room for numerics across machines, not for a broken model (untrained projector: 0/60; the
# questions without the image: 0/60 — the LLM then answers in sentences).
ACCURACY_FLOOR = 33


@pytest.fixture(scope="module")
def vlm(toy_dir):
    return load_model(str(toy_dir), backend="hf", dtype=torch.float32)


def _short_answer_sample() -> list[tuple[Image.Image, str, str]]:
    """The first SAMPLE "what" questions of easy-VQA's test split, with their images."""
    rows = [row for row in training_questions("test") if row[2] not in ("yes", "no")][:SAMPLE]
    return [(Image.open(path).convert("RGB"), question, answer) for path, question, answer in rows]


def test_the_vision_tower_converted_from_onnx_matches_onnxruntime():
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    path = toy_parts.part(toy_parts.DINOV2_ONNX)
    model = toy.dinov2_from_onnx(path)
    model.config._attn_implementation = "eager"
    graph = onnx.load(str(path))
    names = ["/backbone/encoder/layer.10/attention/attention/Softmax_output_0", "/backbone/layernorm/Add_1_output_0"]
    for name in names:  # expose two inner tensors of the graph as outputs
        graph.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = torch.randn(2, 3, toy.IMAGE_SIZE, toy.IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    attention, final = session.run(names, {"input_image": pixels.numpy()})
    with torch.no_grad():
        ours = model(pixels, output_attentions=True)
    assert np.abs(ours.attentions[10].numpy() - attention).max() < 1e-5  # the select layer's attention
    assert np.abs(ours.last_hidden_state.numpy() - final).max() < 1e-4


def test_the_toy_loads_through_the_common_loader_with_its_own_prompt(vlm):
    assert type(vlm) is HFVLM and vlm.tokens_per_image == 256
    tokenizer = vlm.tokenizer
    assert vlm.image_token_id == tokenizer.convert_tokens_to_ids("<image>") == 16  # inside the trained vocabulary
    assert len(tokenizer) == vlm.model.config.text_config.vocab_size == 49152
    ids = vlm.prompt_ids("What color is the shape?")
    assert ids.count(16) == 256
    text = tokenizer.decode([token for token in ids if token != 16])
    assert text == "<|im_start|>user\n\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\n"


def test_unpruned_accuracy_on_a_fixed_sample_stays_above_the_floor(vlm):
    sample = _short_answer_sample()
    answers = []
    for start in range(0, len(sample), 10):
        batch = sample[start:start + 10]
        answers += vlm.generate([image for image, _, _ in batch], [question for _, question, _ in batch], 8)
    correct = sum(answer.rstrip(".").lower() == truth for answer, (_, _, truth) in zip(answers, sample))
    assert correct >= ACCURACY_FLOOR, f"{correct}/{SAMPLE} correct"


def test_keeping_every_patch_equals_the_unpatched_model(vlm):
    image, question, _ = _short_answer_sample()[0]
    inputs = vlm.prepare([image], [question])
    with torch.no_grad():
        unpatched = vlm.model(**inputs).logits
        with llava_patch.apply(vlm.model, "fastervlm", keep=256):
            patched = vlm.model(**inputs).logits
    assert torch.equal(patched, unpatched)


@pytest.mark.parametrize("method", ["fastervlm", "vtc_cls", "random", "grid", "fastv"])
def test_a_pruned_toy_carries_its_budget_into_the_llm(vlm, method):
    images = [image for image, _, _ in _short_answer_sample()[:2]]
    with llava_patch.apply(vlm.model, method, reduction_ratio=0.95) as handle:
        vlm.generate(images, ["What shape is in the image?"] * 2, 4)
        assert handle.last_visual_tokens == [13, 13]  # round(256 × 0.05)


def test_packed_training_sequences_give_the_losses_of_separate_ones(vlm):
    sample = [(image, question, answer) for image, question, answer in _short_answer_sample()[:3]]
    images = [image for image, _, _ in sample[:2]]
    packed = [[(sample[0][1], sample[0][2]), ("Is there a circle?", "no")], [(sample[1][1], sample[1][2])]]
    with torch.no_grad():
        loss, tokens = answer_loss(vlm.model, _batch(vlm, images, packed))
        total, count = 0.0, 0
        for image, questions in zip(images, packed):
            for question in questions:
                batch = _batch(vlm, [image], [[question]])
                logits = vlm.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"]).logits[0]
                scored = batch["labels"][0] != -100  # the stock forward, one question per sequence
                total += torch.nn.functional.cross_entropy(logits[scored], batch["labels"][0][scored], reduction="sum").item()
                count += int(scored.sum())
    assert tokens == count
    assert loss.item() == pytest.approx(total / count, abs=1e-4)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    return toy.build_toy(tmp_path_factory.mktemp("untrained") / "toy", projector=None)


def test_training_writes_its_projector_and_record_and_resumes_to_the_same_weights(untrained, tmp_path, monkeypatch):
    import json

    from safetensors.torch import load_file

    from llava_patch.models.checkpoint import sha256
    from llava_patch.training import projector

    config = projector.TrainingConfig(steps=2, images_per_step=1, warmup_steps=1, save_every=1)
    whole = projector.train_projector(tmp_path / "whole", config, command="test", initial=untrained)
    record = json.loads((tmp_path / "whole" / "training.json").read_text())
    assert record["command"] == "test" and record["images_seen"] == 2 and record["projector_sha256"] == sha256(whole)
    assert record["parts_sha256"]["dinov2_onnx"] == sha256(toy_parts.part(toy_parts.DINOV2_ONNX))
    assert [json.loads(line)["step"] for line in (tmp_path / "whole" / "training_log.jsonl").read_text().splitlines()] == [1, 2]
    assert not (tmp_path / "whole" / "state.pt").exists()
    with pytest.raises(FileExistsError, match="finished"):
        projector.train_projector(tmp_path / "whole", config, initial=untrained)

    real_loss, calls = projector.answer_loss, []

    def stop_at_the_second_step(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(projector, "answer_loss", stop_at_the_second_step)
    with pytest.raises(KeyboardInterrupt):
        projector.train_projector(tmp_path / "resumed", config, initial=untrained)
    monkeypatch.setattr(projector, "answer_loss", real_loss)
    resumed = projector.train_projector(tmp_path / "resumed", config, initial=untrained)
    assert all(torch.equal(load_file(str(whole))[name], tensor) for name, tensor in load_file(str(resumed)).items())
