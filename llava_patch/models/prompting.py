"""The prompt and image preprocessing of LLaVA-1.5's evaluation, shared by both backends.

What both papers ran (LLaVA's `model_vqa_loader.py` and friends): the `vicuna_v1` conversation
template with "<image>\\n" before the question, prompts tokenized chunk by chunk around the image
(LLaVA's `tokenizer_image_token`), and `image_aspect_ratio=pad` — pad to a square with the CLIP mean
colour, then the CLIP processor. Building token ids here, rather than with each backend's own
processor, gives both backends exactly the same text tokens.
"""

from __future__ import annotations

import re
from typing import Callable

import torch
from PIL import Image

IMAGE_TOKEN = "<image>"
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def vicuna_v1_prompt(question: str, with_image: bool = True) -> str:
    """`conv_templates["vicuna_v1"]` with one user turn and an open assistant turn."""
    user = f"{IMAGE_TOKEN}\n{question}" if with_image else question
    return f"{VICUNA_V1_SYSTEM} USER: {user} ASSISTANT:"


def chatml_prompt(question: str, with_image: bool = True) -> str:
    """ChatML (SmolLM2's own chat format, without its default system turn) with one user turn and an
    open assistant turn; the toy LLaVA's format, "<image>\n" before the question as in LLaVA."""
    user = f"{IMAGE_TOKEN}\n{question}" if with_image else question
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


# A checkpoint's `config.prompt_format` → its prompt builder (absent: vicuna_v1, LLaVA-1.5's).
PROMPT_FORMATS = {"vicuna_v1": vicuna_v1_prompt, "chatml": chatml_prompt}


def prompt_builder(config) -> Callable[[str, bool], str]:
    """The prompt builder a model config names in `prompt_format` (default vicuna_v1)."""
    name = getattr(config, "prompt_format", None) or "vicuna_v1"
    if name not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format={name!r} in the model config; known formats: {', '.join(PROMPT_FORMATS)}")
    return PROMPT_FORMATS[name]


def tokenize_with_images(prompt: str, tokenizer, image_token_id: int, tokens_per_image: int = 1) -> list[int]:
    """Token ids of `prompt` with each "<image>" replaced by `tokens_per_image` copies of `image_token_id`."""
    return tokenize_with_placeholders(prompt, tokenizer, {IMAGE_TOKEN: (image_token_id, tokens_per_image)})


def tokenize_with_placeholders(prompt: str, tokenizer, placeholders: dict[str, tuple[int, int]]) -> list[int]:
    """Token ids of `prompt` with each marker (e.g. "<image>", "<video>") replaced by `count` copies of
    its token id, for `placeholders` = {marker: (token id, count)}.

    Like LLaVA's `tokenizer_image_token`: each text chunk between markers is tokenized on its own
    (with the tokenizer's BOS), the BOS is kept once at the start and dropped from every chunk.
    Whether the tokenizer adds a BOS is asked of it (ChatML prompts begin with SmolLM2's BOS token
    as text, which must not be dropped from the later chunks).
    """
    pattern = "(" + "|".join(re.escape(marker) for marker in placeholders) + ")"
    pieces = re.split(pattern, prompt)  # text, marker, text, marker, ..., text
    chunks = [tokenizer(text).input_ids for text in pieces[::2]]
    has_bos = tokenizer.bos_token_id is not None and tokenizer("").input_ids[:1] == [tokenizer.bos_token_id]
    offset = 1 if has_bos else 0
    ids = [chunks[0][0]] if has_bos else []
    for index, chunk in enumerate(chunks):
        if index:
            token_id, count = placeholders[pieces[2 * index - 1]]
            ids += [token_id] * count
        ids += chunk[offset:]
    return ids


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad to a square, centred, with `background` (LLaVA's `expand2square`)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def preprocess_images(images: list[Image.Image], image_processor) -> torch.Tensor:
    """`image_aspect_ratio=pad` preprocessing: (N, 3, H, W) float32 pixel values."""
    background = tuple(int(channel * 255) for channel in image_processor.image_mean)
    squares = [expand_to_square(image.convert("RGB"), background) for image in images]
    return image_processor(squares, return_tensors="pt")["pixel_values"]


def pad_token_id(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its unk token, else 0
    (padding is masked out; LLaVA's Llama tokenizer pads with unk)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.unk_token_id or 0


def left_pad(rows: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (input_ids, attention_mask) for a batch of token rows."""
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, length - len(row) :] = 1
    return input_ids, attention_mask
