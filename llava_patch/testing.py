"""Tiny random LLaVA-1.5-style checkpoints, built from configs and saved like real ones.

Used by the test suite and the demo, where no real checkpoint can be downloaded. They load through
the same `from_pretrained` / `AutoProcessor` code as real checkpoints; their outputs mean nothing.

Vision: CLIP-style tower with [CLS], 56 px images, 7 px patches → 8×8 = 64 patches, 4 layers
(so vision_feature_layer=-2 is encoder layer index 2 and VTC-CLS's default layers are 0, 1, 2).
Language: 2-layer Llama with grouped-query attention. Tokenizer: word-level, made here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

NUM_PATCHES = 64
SELECT_LAYER = 2  # vision_feature_layer=-2 on a 4-layer tower
WORDS = ["USER", "ASSISTANT", ":", "?", ".", "what", "is", "in", "the", "image", "describe", "colour"]
WORDS += [f"w{i}" for i in range(50)]


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", "<pad>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )


def build_tiny_llava(directory: str | Path, seed: int = 0) -> Path:
    """Write a random tiny `LlavaForConditionalGeneration` checkpoint with its processor to `directory`."""
    directory = Path(directory)
    tokenizer = make_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        image_size=56, patch_size=7, projection_dim=16,
    )
    text = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer), max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    # Larger-than-default weights: with the default init a model this small puts near-uniform [CLS]
    # attention on the patches (near-ties in top-k) and greedy decoding repeats one token.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 0.3)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=7,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def load(directory: str | Path, attn_implementation: str = "sdpa"):
    model = LlavaForConditionalGeneration.from_pretrained(directory, attn_implementation=attn_implementation).eval()
    return model, AutoProcessor.from_pretrained(directory)


def random_image(seed: int, size: tuple[int, int] = (64, 80)) -> Image.Image:
    pixels = np.random.RandomState(seed).randint(0, 256, (*size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def prompt(question: str) -> str:
    return f"USER : <image> {question} ASSISTANT :"
