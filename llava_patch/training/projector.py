"""Train the toy LLaVA's projector on easy-VQA's training split (LLaVA stage-1 style: the ViT and the
LLM frozen, only `Linear–GELU–Linear` learns), on a CPU.

What makes it fast enough for a 2-core machine, without changing what is learned:

- all questions of one image share one image prefix: the sequence is `<|im_start|>user\\n` + the 256
  visual tokens, then each question's own tokens with its answer, and a block attention mask lets
  every question see the prefix and itself only, with its positions continuing from the prefix — the
  same logits as one sequence per question;
- the loss is on the answer tokens only (answer + `<|im_end|>`), and the LM head runs only where
  they are predicted;
- the frozen weights need no gradients: backward goes through activations only.

The prompt tokens are exactly those evaluation feeds the model (`VLM.prompt_ids`), and the image
preprocessing is the evaluation's (`preprocess_images`). A fixed seed fixes the image order; the run
writes a JSONL log and resumes from its last checkpoint when rerun.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..eval.easyvqa import training_questions
from ..eval.files import write_atomic
from ..models import toy, toy_parts
from ..models.prompting import preprocess_images

LOG = "training_log.jsonl"
RECORD = "training.json"
STATE = "state.pt"  # resumable state (projector, optimiser, step), deleted when training ends


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = 220
    images_per_step: int = 4
    learning_rate: float = 2e-3  # twice LLaVA-1.5's stage-1 rate: 53% → 62% on the test sample (docs/toy.md)
    warmup_steps: int = 10
    seed: int = 0
    threads: int | None = None  # torch's CPU threads (None: torch's default)
    save_every: int = 25  # steps between resumable states


def _schedule(step: int, config: TrainingConfig) -> float:
    """Linear warm-up, then cosine decay to zero (LLaVA's schedule)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _packed_sequence(vlm, questions: list[tuple[str, str]]) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """Token ids of one image's packed sequence: the shared prefix (up to the last image token), then
    each question's prompt tail and answer. Returns (ids, blocks as (start, end), answer positions: the
    indices whose token is predicted by the loss)."""
    rows = [vlm.prompt_ids(question) for question, _ in questions]
    prefix_length = max(i for i, token in enumerate(rows[0]) if token == vlm.image_token_id) + 1
    ids, blocks, answers = rows[0][:prefix_length], [], []
    for row, (_question, answer) in zip(rows, questions):
        if row[:prefix_length] != ids[:prefix_length]:
            raise ValueError("questions of one image do not share their image prefix")
        target = vlm.tokenizer(answer + vlm.tokenizer.eos_token, add_special_tokens=False).input_ids
        start = len(ids)
        ids += row[prefix_length:]
        answers += range(len(ids), len(ids) + len(target))
        ids += target
        blocks.append((start, len(ids)))
    return ids, blocks, answers


def _batch(vlm, images: list, question_lists: list[list[tuple[str, str]]]) -> dict[str, torch.Tensor]:
    """Right-padded packed sequences of several images with their block masks, positions and labels."""
    packed = [_packed_sequence(vlm, questions) for questions in question_lists]
    length = max(len(ids) for ids, _, _ in packed)
    count = len(packed)
    input_ids = torch.full((count, length), vlm.pad_token_id, dtype=torch.long)
    positions = torch.zeros((count, length), dtype=torch.long)
    allowed = torch.zeros((count, 1, length, length), dtype=torch.bool)
    labels = torch.full((count, length), -100, dtype=torch.long)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    for row, (ids, blocks, answers) in enumerate(packed):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        prefix = blocks[0][0]
        positions[row, :prefix] = torch.arange(prefix)
        allowed[row, 0, :prefix, :prefix] = causal[:prefix, :prefix]
        for start, end in blocks:
            positions[row, start:end] = torch.arange(prefix, prefix + end - start)
            allowed[row, 0, start:end, :prefix] = True
            allowed[row, 0, start:end, start:end] = causal[: end - start, : end - start]
        allowed[row, 0, len(ids):, len(ids):] = torch.eye(length - len(ids), dtype=torch.bool)  # padding: itself
        answer_positions = torch.tensor(answers)
        labels[row, answer_positions - 1] = input_ids[row, answer_positions]  # position t predicts token t+1
    pixel_values = preprocess_images(images, vlm.image_processor)
    return {"input_ids": input_ids, "position_ids": positions, "attention_mask": allowed, "labels": labels,
            "pixel_values": pixel_values}


def answer_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens of a packed batch, and how many there are."""
    inner = model.model
    with torch.no_grad():
        features = inner.vision_tower(batch["pixel_values"], output_hidden_states=True)
        patches = features.hidden_states[model.config.vision_feature_layer][:, 1:]  # "default": [CLS] dropped
    projected = inner.multi_modal_projector(patches)
    embeddings = inner.get_input_embeddings()(batch["input_ids"])
    image_positions = batch["input_ids"] == model.config.image_token_id
    embeddings = embeddings.masked_scatter(image_positions.unsqueeze(-1), projected.to(embeddings.dtype))
    hidden = inner.language_model(inputs_embeds=embeddings, attention_mask=batch["attention_mask"],
                                  position_ids=batch["position_ids"], use_cache=False).last_hidden_state
    scored = batch["labels"] != -100
    logits = model.lm_head(hidden[scored])
    return torch.nn.functional.cross_entropy(logits.float(), batch["labels"][scored]), int(scored.sum())


def _image_order(seed: int) -> list[tuple[Path, list[tuple[str, str]]]]:
    by_image: dict[Path, list[tuple[str, str]]] = {}
    for image, question, answer in training_questions("train"):
        by_image.setdefault(image, []).append((question, answer))
    order = sorted(by_image.items(), key=lambda item: str(item[0]))
    random.Random(seed).shuffle(order)
    return order


def train_projector(output: str | Path, config: TrainingConfig = TrainingConfig(), command: str = "",
                    initial: str | Path | None = None) -> Path:
    """Train the projector from LLaVA's initialisation; writes `projector.safetensors` (fp16),
    `training_log.jsonl` and `training.json` into `output` and returns the projector's path. A rerun
    resumes from the last saved step; a finished `output` is refused. initial: the toy checkpoint to
    start from (default: built under `output` with the projector's seeded initialisation)."""
    from PIL import Image
    from safetensors.torch import save_file
    from tqdm import tqdm

    from ..eval.provenance import device_name, git_commit, sha256, versions
    from ..models.loading import load_model

    output = Path(output)
    if (output / RECORD).exists():
        raise FileExistsError(f"{output / RECORD}: this training run is finished; nothing is overwritten")
    output.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    if initial is None:
        initial = output / "initial-checkpoint"
        if not initial.exists():
            toy.build_toy(initial, projector=None, seed=config.seed)
    vlm = load_model(str(initial), backend="hf", dtype="float32", device="cpu")
    model = vlm.model
    model.requires_grad_(False)
    projector = model.model.multi_modal_projector
    projector.requires_grad_(True)
    optimiser = torch.optim.AdamW(projector.parameters(), lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _schedule(step, config))
    step, elapsed = 0, 0.0
    if (output / STATE).exists():
        state = torch.load(output / STATE, weights_only=False)
        projector.load_state_dict(state["projector"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        step, elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["rng"])
    else:
        torch.manual_seed(config.seed)
        (output / LOG).write_text("")
    order = _image_order(config.seed)
    needed = config.steps * config.images_per_step
    if needed > len(order):
        raise ValueError(f"steps × images_per_step = {needed} > {len(order)} training images")
    progress = tqdm(total=config.steps, initial=step, desc="training the projector", unit="step")
    while step < config.steps:
        started = time.perf_counter()
        chunk = order[step * config.images_per_step: (step + 1) * config.images_per_step]
        images = [Image.open(path).convert("RGB") for path, _ in chunk]
        batch = _batch(vlm, images, [questions for _, questions in chunk])
        loss, tokens = answer_loss(model, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        step += 1
        elapsed += time.perf_counter() - started
        questions = sum(len(questions) for _, questions in chunk)
        entry = {"step": step, "loss": round(loss.item(), 5), "learning_rate": scheduler.get_last_lr()[0],
                 "images": len(chunk), "questions": questions, "answer_tokens": tokens, "seconds": round(elapsed, 1)}
        with open(output / LOG, "a") as log:
            log.write(json.dumps(entry) + "\n")
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step % config.save_every == 0 or step == config.steps:
            torch.save({"projector": projector.state_dict(), "optimiser": optimiser.state_dict(),
                        "scheduler": scheduler.state_dict(), "step": step, "elapsed": elapsed,
                        "rng": torch.get_rng_state()}, output / STATE)
    progress.close()
    path = output / "projector.safetensors"
    save_file({name: tensor.detach().half().contiguous() for name, tensor in projector.state_dict().items()}, str(path))
    data = toy_parts.part(toy_parts.EASY_VQA)
    record = {
        "command": command, "config": asdict(config), "training_seconds": round(elapsed, 1),
        "images_seen": needed, "questions_seen": sum(len(q) for _, q in order[:needed]),
        "parts_sha256": {"dinov2_onnx": sha256(toy_parts.part(toy_parts.DINOV2_ONNX)),
                         "smollm2_gguf": sha256(toy_parts.part(toy_parts.SMOLLM2_GGUF)),
                         "easy_vqa_train_questions": sha256(data / "train" / "questions.json")},
        "projector_sha256": sha256(path), "git_commit": git_commit(), "versions": versions(),
        "device": device_name(),
    }
    write_atomic(output / RECORD, json.dumps(record, indent=1) + "\n")
    (output / STATE).unlink()
    return path
