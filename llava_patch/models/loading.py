"""One loader for both backends: `load_model(path, backend="llava" | "hf")` → `VLM`.

`VLM` gives evaluation code one interface — the papers' prompt, preprocessing, batching and greedy
decoding — whichever model class sits underneath:

- backend "llava": the original LLaVA codebase (`llava-torch==1.2.2.post1`), loaded through its own
  `llava.model.builder.load_pretrained_model`; checkpoints such as liuhaotian/llava-v1.5-7b.
- backend "hf": transformers' LLaVA-1.5, LLaVA-NeXT and Video-LLaVA classes; checkpoints such as
  llava-hf/llava-1.5-7b-hf (or one converted with `llava-patch convert`).

Both get token ids from `llava_patch.models.prompting`, so their text tokens are identical.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..adapters.llava_original import IMAGE_TOKEN_INDEX
from ..tower import llava_vision_geometry
from .checkpoint import check_weights, read_config, vision_tower_path
from .prompting import IMAGE_TOKEN, left_pad, pad_token_id, preprocess_images, prompt_builder, tokenize_with_images

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
    """A loaded LLaVA-family model with its evaluation protocol: prompt, preprocessing, batching and
    decoding (vicuna_v1, pad, greedy for the image models; Video-LLaVA's own for video, see `VideoVLM`).

    `generate(media, questions, max_new_tokens)` answers a batch; afterwards `last_new_tokens` holds the
    tokens it generated and `last_min_margins` each answer's smallest top-2 logit gap (None where the
    protocol samples)."""

    backend: str
    image_token_id: int  # what stands for an image in `input_ids`
    tokens_per_image: int  # how many of them per image
    image_argument: str  # the model's keyword for pixel values
    generate_ids_argument: str  # its generate()'s keyword for token ids
    decoding: dict = {"do_sample": False, "num_beams": 1}  # greedy, as the papers' evaluation scripts

    def __init__(self, model: nn.Module, tokenizer, image_processor, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.source = source
        self.pad_token_id = pad_token_id(tokenizer)
        self.build_prompt = prompt_builder(getattr(model, "config", None))

    def prompt(self, question: str, with_image: bool = True) -> str:
        return self.build_prompt(question, with_image)

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
    def generate(self, media: list | None, questions: list[str], max_new_tokens: int = 128) -> list[str]:
        """Answers for a batch: `media` holds one image (or, for `VideoVLM`, one list of frames) per
        question, or is None for text-only questions. KV cache on; the decoding of `decoding`."""
        from transformers import LogitsProcessorList

        inputs = self.prepare(media, questions)
        arguments = dict(inputs)
        arguments[self.generate_ids_argument] = arguments.pop("input_ids")
        margins = GreedyMargins(self.tokenizer.eos_token_id)
        output = self.model.generate(
            **arguments, **self.decoding, max_new_tokens=max_new_tokens, use_cache=True,
            pad_token_id=self.pad_token_id, logits_processor=LogitsProcessorList([margins]),
        )
        greedy = not self.decoding.get("do_sample")
        self.last_min_margins = margins.smallest.tolist() if greedy else [None] * len(questions)
        new_tokens = self.new_tokens(output, inputs)
        self.last_new_tokens = int((new_tokens != self.pad_token_id).sum())  # for throughput figures
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def new_tokens(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return output[:, inputs["input_ids"].shape[1] :]  # transformers returns prompt + answer


class HFVLM(VLM):
    """LLaVA-1.5 on transformers (`LlavaForConditionalGeneration`)."""

    backend = "hf"
    image_argument = "pixel_values"
    generate_ids_argument = "input_ids"

    def __init__(self, model, processor, source: str) -> None:
        super().__init__(model, processor.tokenizer, processor.image_processor, source)
        self.processor = processor
        self.image_token_id = model.config.image_token_id
        self.tokens_per_image = llava_vision_geometry(model.config).num_patches


class HFNextVLM(HFVLM):
    """LLaVA-NeXT on transformers (`LlavaNextForConditionalGeneration`): "anyres" preprocessing (base
    image + grid crops) by the checkpoint's processor, whose grid follows the model's
    `image_grid_pinpoints` (the paper mode of `apply` changes them), and as many placeholders per
    image as the processor writes for it."""

    def prompt_ids(self, question: str, with_image: bool = True) -> list[int]:
        return tokenize_with_images(self.prompt(question, with_image), self.tokenizer, self.image_token_id, 1)

    def prepare(self, images: list[Image.Image] | None, questions: list[str]) -> dict[str, torch.Tensor]:
        if images is None:
            return super().prepare(images, questions)
        self.image_processor.image_grid_pinpoints = self.model.config.image_grid_pinpoints
        rows = []
        for image, question in zip(images, questions):
            placeholders = int((self.processor(images=[image], text=IMAGE_TOKEN, return_tensors="pt")["input_ids"]
                                == self.image_token_id).sum())
            ids = self.prompt_ids(question)
            position = ids.index(self.image_token_id)
            rows.append(ids[:position] + [self.image_token_id] * placeholders + ids[position + 1 :])
        input_ids, attention_mask = left_pad(rows, self.pad_token_id)
        pixels = self.image_processor(images, return_tensors="pt")
        device = self.model.device
        return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
                "pixel_values": pixels["pixel_values"].to(device, self.model.dtype), "image_sizes": pixels["image_sizes"]}


class LlavaVLM(VLM):
    """LLaVA-1.5 and LLaVA-NeXT on the original LLaVA codebase."""

    backend = "llava"
    image_argument = "images"
    generate_ids_argument = "inputs"
    image_token_id = IMAGE_TOKEN_INDEX
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


class VideoVLM(VLM):
    """Video-LLaVA (transformers) with Video-LLaVA's video-QA protocol (its run_inference_video_qa):
    the `llava_v1` template with "<video>\n" before the question, 8 uniformly sampled frames, sampling
    at temperature 0.1, up to 1024 new tokens. Seed torch before `generate` for repeatable answers."""

    backend = "hf"
    generate_ids_argument = "input_ids"
    decoding = {"do_sample": True, "temperature": 0.1}
    SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the human's questions.")

    def prompt(self, question: str, with_image: bool = True) -> str:
        return f"{self.SYSTEM} USER: <video>\n{question} ASSISTANT:"

    def prepare(self, videos: list[list[Image.Image]] | None, questions: list[str]) -> dict[str, torch.Tensor]:
        from .media import video_llava_inputs

        if videos is None or len(videos) != len(questions):
            raise ValueError(f"Video-LLaVA's video QA needs one video per question ({questions!r})")
        inputs = video_llava_inputs(self.model.config, self.tokenizer, self.image_processor,
                                    [self.prompt(q) for q in questions], videos=videos)
        inputs = {name: value.to(self.model.device) for name, value in inputs.items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        return inputs


def load_model(
    path_or_id: str | Path,
    backend: str = "llava",
    dtype: torch.dtype | None = None,
    device: str | None = None,
) -> VLM:
    """Load a LLaVA-family checkpoint with the chosen backend, as a `VLM` with the evaluation protocol.

    backend "llava" (the original codebase): LLaVA-1.5 and LLaVA-NeXT (v1.6) → `LlavaVLM`.
    backend "hf" (transformers): LLaVA-1.5 → `HFVLM`, LLaVA-NeXT → `HFNextVLM`, Video-LLaVA → `VideoVLM`.
    dtype: defaults to float16 on CUDA and float32 on CPU. device: defaults to "cuda" when available.
    Weights come from safetensors where the checkpoint has them; remote code is never run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; choose one of {', '.join(BACKENDS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
    source = str(path_or_id)
    check_checkpoint_path(source)
    if backend == "hf":
        return _load_hf(source, dtype, device)
    return _load_llava(source, dtype, device)


HF_MODEL_TYPES = ("llava", "llava_next", "video_llava")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_checkpoint_path(source: str) -> None:
    """A checkpoint that looks like a local path must exist: it starts with "." "/" or "~", its parent
    folder exists, or it is not a hub id (owner/name). Otherwise a typo would be sent to the hub
    (a wait on network retries, then the hub's message about repo ids)."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{source}: not a checkpoint directory")
        return
    looks_local = (source.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(source)
                   or (path.parent != Path(".") and path.parent.exists()))
    if looks_local:
        raise FileNotFoundError(f"{source}: no such checkpoint directory")


def _load_hf(source: str, dtype: torch.dtype, device: str) -> VLM:
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    local = Path(source)
    if local.exists():
        model_type = read_config(local / "config.json").get("model_type")
    else:
        model_type = AutoConfig.from_pretrained(source, trust_remote_code=False).model_type
    if model_type not in HF_MODEL_TYPES:
        where = local / "config.json" if local.exists() else source
        raise ValueError(f"{where}: model_type {model_type!r}; backend 'hf' loads {', '.join(HF_MODEL_TYPES)} "
                         "(LLaVA-1.5, LLaVA-NeXT, Video-LLaVA); original-layout checkpoints load with backend 'llava'")
    if model_type == "video_llava":
        return _load_video_llava(source, dtype, device)
    model_class, vlm_class = ((LlavaNextForConditionalGeneration, HFNextVLM) if model_type == "llava_next"
                              else (LlavaForConditionalGeneration, HFVLM))
    model = model_class.from_pretrained(source, dtype=dtype, trust_remote_code=False)
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=False)
    return vlm_class(model.to(device).eval(), processor, source)


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
        resolved = vision_tower_path(local, config)  # relative to the checkpoint, not the cwd
        if resolved != tower:
            overrides["mm_vision_tower"] = resolved
        tower_path = Path(resolved)
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
