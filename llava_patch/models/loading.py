"""One loader for both backends: `load_model(path, backend="llava" | "hf")` → `VLM`.

`VLM` gives evaluation code one interface — the papers' prompt, preprocessing, batching and greedy
decoding — whichever model class sits underneath:

- backend "llava": the original LLaVA codebase (`llava-torch==1.2.2.post1`), loaded through its own
  `llava.model.builder.load_pretrained_model`; checkpoints such as liuhaotian/llava-v1.5-7b.
- backend "hf": transformers' `LlavaForConditionalGeneration`; checkpoints such as llava-hf/llava-1.5-7b-hf
  (or one converted with `llava-patch convert`).

Both get token ids from `llava_patch.models.prompting`, so their text tokens are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .prompting import left_pad, preprocess_images, tokenize_with_images, vicuna_v1_prompt

BACKENDS = ("llava", "hf")
LLAVA_REQUIREMENT = "llava-torch==1.2.2.post1"  # installed with --no-deps: its own pins conflict with ours
LLAVA_INSTALL_HINT = f"pip install --no-deps {LLAVA_REQUIREMENT}  (`make test` does it; see environment.yml)"


class GreedyMargins:
    """A logits processor that keeps, per row, the smallest gap between the two best logits over the
    steps before the row's end of sequence: a greedy near-tie, where batched and one-by-one decoding
    (or two dtypes) may pick different tokens. Stores nothing per step."""

    def __init__(self, eos_token_id: int | None) -> None:
        self.eos_token_id = eos_token_id
        self.smallest: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        top = scores.float().topk(2, dim=-1).values
        gap = top[:, 0] - top[:, 1]
        if self.smallest is None:
            self.smallest = gap
        else:
            finished = input_ids[:, -1] == self.eos_token_id if self.eos_token_id is not None else torch.zeros_like(gap, dtype=torch.bool)
            self.smallest = torch.where(finished, self.smallest, torch.minimum(self.smallest, gap))
        return scores


class VLM:
    """A loaded LLaVA model with the evaluation protocol of SPEC §6 (vicuna_v1, pad, greedy)."""

    backend: str
    image_token_id: int  # what stands for an image in `input_ids`
    tokens_per_image: int  # how many of them per image

    def __init__(self, model: nn.Module, tokenizer, image_processor, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.source = source
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (tokenizer.unk_token_id or 0)

    def prompt(self, question: str, with_image: bool = True) -> str:
        return vicuna_v1_prompt(question, with_image)

    def prompt_ids(self, question: str, with_image: bool = True) -> list[int]:
        prompt = self.prompt(question, with_image)
        return tokenize_with_images(prompt, self.tokenizer, self.image_token_id, self.tokens_per_image)

    def prepare(self, images: list[Image.Image] | None, questions: list[str]) -> dict[str, torch.Tensor]:
        """Model inputs for a batch of (image, question) pairs — or, with images=None, of text-only
        questions (as ScienceQA's questions without a picture) — left padded, on the model's device."""
        if images is not None and len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        rows = [self.prompt_ids(q, with_image=images is not None) for q in questions]
        input_ids, attention_mask = left_pad(rows, self.pad_token_id)
        device = self.model.device
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        return {**inputs, **self.pixel_inputs(images)} if images is not None else inputs

    def pixel_inputs(self, images: list[Image.Image]) -> dict:
        """`image_aspect_ratio=pad` pixels under the model's keyword, on its device and dtype."""
        pixels = preprocess_images(images, self.image_processor)
        return {self.image_argument: pixels.to(self.model.device, self.model.dtype)}

    def forward(self, inputs: dict[str, torch.Tensor]):
        return self.model(**inputs)

    @torch.no_grad()
    def generate(self, images: list[Image.Image] | None, questions: list[str], max_new_tokens: int = 128) -> list[str]:
        """Greedy answers (temperature 0, one beam, KV cache), as the papers' evaluation scripts.
        `last_min_margins` then holds each answer's smallest top-2 logit gap (see `GreedyMargins`)."""
        from transformers import LogitsProcessorList

        inputs = self.prepare(images, questions)
        arguments = dict(inputs)
        arguments[self.generate_ids_argument] = arguments.pop("input_ids")
        margins = GreedyMargins(self.tokenizer.eos_token_id)
        output = self.model.generate(
            **arguments, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, use_cache=True,
            pad_token_id=self.pad_token_id, logits_processor=LogitsProcessorList([margins]),
        )
        self.last_min_margins = margins.smallest.tolist()
        new_tokens = self.new_tokens(output, inputs)
        self.last_new_tokens = int((new_tokens != self.pad_token_id).sum())  # for throughput figures
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    image_argument: str  # the model's keyword for pixel values
    generate_ids_argument: str  # its generate()'s keyword for token ids

    def new_tokens(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class HFVLM(VLM):
    backend = "hf"
    image_argument = "pixel_values"
    generate_ids_argument = "input_ids"

    def __init__(self, model, processor, source: str) -> None:
        super().__init__(model, processor.tokenizer, processor.image_processor, source)
        self.image_token_id = model.config.image_token_id
        vision = model.config.vision_config
        self.tokens_per_image = (vision.image_size // vision.patch_size) ** 2

    def new_tokens(self, output, inputs):
        return output[:, inputs["input_ids"].shape[1] :]  # transformers returns prompt + answer


class LlavaVLM(VLM):
    backend = "llava"
    image_argument = "images"
    generate_ids_argument = "inputs"
    image_token_id = -200  # llava.constants.IMAGE_TOKEN_INDEX
    tokens_per_image = 1

    def new_tokens(self, output, inputs):
        return output  # the original generate() runs from inputs_embeds and returns only new tokens

    def pixel_inputs(self, images: list[Image.Image]) -> dict:
        if getattr(self.model.config, "image_aspect_ratio", None) != "anyres":
            return super().pixel_inputs(images)
        from llava.mm_utils import process_images  # LLaVA-NeXT: base image + grid crops, LLaVA's own code

        crops = process_images(images, self.image_processor, self.model.config)
        device, dtype = self.model.device, self.model.dtype
        crops = crops.to(device, dtype) if isinstance(crops, torch.Tensor) else [c.to(device, dtype) for c in crops]
        return {"images": crops, "image_sizes": [image.size for image in images]}


class VideoVLM:
    """Video-LLaVA (transformers) with Video-LLaVA's video-QA protocol (its run_inference_video_qa):
    the `llava_v1` template with "<video>\n" before the question, 8 uniformly sampled frames, sampling
    at temperature 0.1, up to 1024 new tokens. Seed torch before `generate` for repeatable answers."""

    backend = "hf"
    SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the human's questions.")

    def __init__(self, model: nn.Module, tokenizer, image_processor, source: str) -> None:
        self.model, self.tokenizer, self.image_processor, self.source = model, tokenizer, image_processor, source
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (tokenizer.unk_token_id or 0)

    def prompt(self, question: str) -> str:
        return f"{self.SYSTEM} USER: <video>\n{question} ASSISTANT:"

    @torch.no_grad()
    def generate(self, videos: list[list[Image.Image]], questions: list[str], max_new_tokens: int = 1024) -> list[str]:
        from .media import video_llava_inputs

        inputs = video_llava_inputs(self.model.config, self.tokenizer, self.image_processor,
                                    [self.prompt(q) for q in questions], videos=videos)
        inputs = {name: value.to(self.model.device) for name, value in inputs.items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        output = self.model.generate(**inputs, do_sample=True, temperature=0.1, max_new_tokens=max_new_tokens,
                                     use_cache=True, pad_token_id=self.pad_token_id)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        self.last_new_tokens = int((new_tokens != self.pad_token_id).sum())
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def load_model(
    path_or_id: str | Path,
    backend: str = "llava",
    dtype: torch.dtype | None = None,
    device: str | None = None,
) -> VLM:
    """Load a LLaVA-1.5 checkpoint with the chosen backend.

    dtype: defaults to float16 on CUDA and float32 on CPU. device: defaults to "cuda" when available.
    Weights come from safetensors where the checkpoint has them; remote code is never run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; choose one of {', '.join(BACKENDS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
    source = str(path_or_id)
    if backend == "hf":
        return _load_hf(source, dtype, device)
    return _load_llava(source, dtype, device)


def _load_hf(source: str, dtype: torch.dtype, device: str) -> HFVLM | VideoVLM:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    local = Path(source)
    if local.exists():
        model_type = read_config(local / "config.json").get("model_type")
        if model_type == "video_llava":
            return _load_video_llava(source, dtype, device)
        if model_type != "llava":
            raise ValueError(f"{local / 'config.json'}: model_type {model_type!r}; backend 'hf' loads LLaVA-1.5 "
                             "('llava') and Video-LLaVA ('video_llava'). Load LLaVA-NeXT with transformers and call "
                             "llava_patch.apply, or use backend 'llava' for original v1.6 checkpoints")
    model = LlavaForConditionalGeneration.from_pretrained(source, dtype=dtype, trust_remote_code=False)
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=False)
    return HFVLM(model.to(device).eval(), processor, source)


def _load_video_llava(source: str, dtype: torch.dtype, device: str) -> VideoVLM:
    from transformers import AutoImageProcessor, AutoTokenizer, VideoLlavaForConditionalGeneration

    model = VideoLlavaForConditionalGeneration.from_pretrained(source, dtype=dtype, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    tokenizer.padding_side = "left"
    image_processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False)
    return VideoVLM(model.to(device).eval(), tokenizer, image_processor, source)


def _load_llava(source: str, dtype: torch.dtype, device: str) -> LlavaVLM:
    try:
        from llava.mm_utils import get_model_name_from_path
        from llava.model.builder import load_pretrained_model
    except ImportError as error:
        raise ImportError(f"backend='llava' needs the original LLaVA code ({error}); install it with: {LLAVA_INSTALL_HINT}") from error

    overrides = {}
    local = Path(source)
    if local.exists():
        config = read_config(local / "config.json")
        tower = config.get("mm_vision_tower")
        if tower is None:
            raise ValueError(f"{local / 'config.json'}: no 'mm_vision_tower' entry; not an original-format LLaVA checkpoint")
        if not Path(tower).is_absolute() and (local / tower).exists():
            overrides["mm_vision_tower"] = str((local / tower).resolve())  # relative to the checkpoint, not the cwd
        tower_path = Path(overrides.get("mm_vision_tower", tower))
        if (tower_path.is_absolute() or tower.startswith(".")) and not tower_path.exists():
            raise FileNotFoundError(f"{local / 'config.json'}: mm_vision_tower {tower!r} does not exist")
        if tower_path.exists():
            read_config(tower_path / "config.json")
        check_weights(local)
    # The builder picks the model class from the name: it must contain "llava".
    name = get_model_name_from_path(source)
    name = name if "llava" in name.lower() else f"llava-{name}"
    tokenizer, model, image_processor, _ = load_pretrained_model(
        source, None, name, device=device, device_map=device, use_safetensors=None, trust_remote_code=False,
        **overrides,
    )
    # The original pads batches on the right (its training default); batched generation needs left.
    model.config.tokenizer_padding_side = "left"
    model = model.to(dtype).eval()
    return LlavaVLM(model, tokenizer, image_processor, source)


def read_config(path: Path) -> dict:
    """A checkpoint's JSON config, or an error that names the file (and the line, if malformed)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a checkpoint directory needs its config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from error


def check_weights(directory: Path) -> None:
    """Every weight file a checkpoint names must exist: single files or a sharded index."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.exists():
            shards = set(read_config(index).get("weight_map", {}).values())
            missing = sorted(shard for shard in shards if not (directory / shard).is_file())
            if missing:
                raise FileNotFoundError(f"{index}: lists {', '.join(missing)}, missing from {directory}")
            return
    if not any((directory / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise FileNotFoundError(f"{directory}: no weights (model.safetensors, pytorch_model.bin or a sharded index)")
