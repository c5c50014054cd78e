"""Tiny random LLaVA-1.5-style checkpoints, built from configs and saved like real ones.

Used by the test suite and the demo, where no real checkpoint can be downloaded. They load through
the same `from_pretrained` / `AutoProcessor` code as real checkpoints; their outputs mean nothing.

Vision: CLIP-style tower with [CLS], 56 px images, 7 px patches → 8×8 = 64 patches, 4 layers
(so vision_feature_layer=-2 is encoder layer index 2 and VTC-CLS's default layers are 0, 1, 2);
`build_tiny_llava_dinov2` puts a DINOv2 tower (ViT/14 with [CLS], no registers) in its place.
Language: 4-layer Llama with grouped-query attention. Tokenizer: word-level, made here.
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
    Dinov2Config,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

NUM_PATCHES = 64
SELECT_LAYER = 2  # vision_feature_layer=-2 on a 4-layer tower
# The DINOv2 one: ViT/14 at 224 px, DINOv2's own grid (16×16), large enough for every PruMerge+ budget.
DINOV2_IMAGE_SIZE, DINOV2_PATCH_SIZE = 224, 14
DINOV2_NUM_PATCHES = (DINOV2_IMAGE_SIZE // DINOV2_PATCH_SIZE) ** 2
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


def build_tiny_llava_config(vocab_size: int, pad_token_id: int = 0, image_token_id: int = 0,
                            image_size: int = 56, patch_size: int = 7) -> LlavaConfig:
    """The tiny architecture: 4-layer CLIP-style tower (64 patches) and a 4-layer GQA Llama (FastV prunes at layer 2)."""
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size, projection_dim=16,
    )
    text = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=vocab_size, max_position_embeddings=2048, pad_token_id=pad_token_id, bos_token_id=1, eos_token_id=2,
    )
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_token_id,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )


def _spread_weights(module: torch.nn.Module) -> None:
    """Larger-than-default weights: with the default init a model this small puts near-uniform [CLS]
    attention on the patches (near-ties in top-k) and greedy decoding repeats one token."""
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 0.3)


def build_tiny_llava(directory: str | Path, seed: int = 0, image_size: int = 56, patch_size: int = 7) -> Path:
    """Write a random tiny `LlavaForConditionalGeneration` checkpoint with its processor to `directory`.

    image_size=336, patch_size=14 gives LLaVA-1.5's real 24×24 = 576-patch geometry on the tiny widths.
    """
    tokenizer = make_tokenizer()
    config = build_tiny_llava_config(
        len(tokenizer), pad_token_id=tokenizer.pad_token_id, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_size=image_size, patch_size=patch_size,
    )
    return _save_tiny_llava(directory, config, tokenizer, seed, CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}))


def build_tiny_llava_dinov2(directory: str | Path, seed: int = 0) -> Path:
    """Write a random tiny `LlavaForConditionalGeneration` checkpoint whose vision tower is a
    `Dinov2Model` (4 layers, 224-px images of 16×16 patches, [CLS], no registers) with its processor
    (ImageNet normalisation, as DINOv2's) to `directory`. The language side is `build_tiny_llava`'s."""
    tokenizer = make_tokenizer()
    base = build_tiny_llava_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<image>"))
    vision = Dinov2Config(hidden_size=32, mlp_ratio=2, num_hidden_layers=4, num_attention_heads=4,
                          image_size=DINOV2_IMAGE_SIZE, patch_size=DINOV2_PATCH_SIZE)
    config = LlavaConfig(vision_config=vision, text_config=base.text_config, image_token_id=base.image_token_id,
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": DINOV2_IMAGE_SIZE}, crop_size={"height": DINOV2_IMAGE_SIZE, "width": DINOV2_IMAGE_SIZE},
        image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD,
    )
    return _save_tiny_llava(directory, config, tokenizer, seed, image_processor)


def _save_tiny_llava(directory: str | Path, config: LlavaConfig, tokenizer, seed: int, image_processor) -> Path:
    """Random weights for `config`, saved with a LLaVA processor (one placeholder per patch)."""
    directory = Path(directory)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    _spread_weights(model)
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=config.vision_config.patch_size,
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


SPM_CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: What is shown in the image? ASSISTANT: A cat on a red sofa.",
    "Answer the question using a single word or phrase. Yes No",
    "Is there a dog in the image? Describe the colour and the shape of the object.",
    "How many people are there? 1 2 3 4 5 6 7 8 9 0",
]


def build_tiny_llava_original(directory: str | Path, seed: int = 0, anyres: bool = False) -> Path:
    """Write a tiny checkpoint in the original LLaVA layout; returns the model directory.

    anyres=True writes a LLaVA-NeXT (v1.6) one instead: `image_aspect_ratio="anyres"`, spatial_unpad
    merge with a learned `model.image_newline`, and `TINY_GRID_PINPOINTS`.

    `<directory>/clip-vit-tiny`: the CLIP vision tower (CLIPVisionModel + image processor config).
    `<directory>/llava-v1.5-tiny`: config.json with `mm_*` fields (`mm_vision_tower` = the tower's
    absolute path), fp16 Llama + `model.mm_projector` weights in model.safetensors, and a
    sentencepiece `tokenizer.model` trained here (byte fallback, like Llama's) — what
    `llava.model.builder.load_pretrained_model` reads for liuhaotian/llava-v1.5-7b.
    """
    import io
    import json

    import sentencepiece
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, CLIPVisionModel, LlamaForCausalLM

    directory = Path(directory)
    tower_dir, model_dir = directory / "clip-vit-tiny", directory / ("llava-v1.6-tiny" if anyres else "llava-v1.5-tiny")
    model_dir.mkdir(parents=True)
    spm = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS * 20), model_writer=spm, vocab_size=400, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, minloglevel=2,
    )
    (model_dir / "tokenizer.model").write_bytes(spm.getvalue())
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "model_max_length": 2048, "padding_side": "right",
    }, indent=2))
    vocab_size = len(AutoTokenizer.from_pretrained(model_dir))

    reference = build_tiny_llava_config(vocab_size)
    torch.manual_seed(seed)
    tower = CLIPVisionModel(reference.vision_config)
    language_model = LlamaForCausalLM(reference.text_config)
    projector = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.GELU(), torch.nn.Linear(32, 32))
    for module in (tower, language_model, projector):
        _spread_weights(module)
    tower.to(torch.float16).save_pretrained(tower_dir)
    CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(tower_dir)

    state = dict(language_model.state_dict())
    state.update({f"model.mm_projector.{name}": tensor for name, tensor in projector.state_dict().items()})
    if anyres:
        state["model.image_newline"] = torch.randn(32) * 0.3
    save_file({name: tensor.to(torch.float16).contiguous() for name, tensor in state.items()},
              model_dir / "model.safetensors", metadata={"format": "pt"})
    text = reference.text_config
    config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "torch_dtype": "float16",
        "vocab_size": vocab_size, "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "hidden_act": "silu", "max_position_embeddings": 2048,
        "rms_norm_eps": text.rms_norm_eps, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "pretraining_tp": 1, "attention_bias": False, "initializer_range": 0.02,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "use_cache": True,
        "mm_vision_tower": str(tower_dir.resolve()), "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad", "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "tokenizer_padding_side": "right", "use_mm_proj": True, "tune_mm_mlp_adapter": False,
    }
    if anyres:
        config.update(image_aspect_ratio="anyres", mm_patch_merge_type="spatial_unpad", image_grid_pinpoints=TINY_GRID_PINPOINTS)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    return model_dir


TINY_GRID_PINPOINTS = [[56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]  # LLaVA-NeXT's, scaled 336 → 56


def build_tiny_llava_next(directory: str | Path, seed: int = 0) -> Path:
    """Write a random tiny `LlavaNextForConditionalGeneration` checkpoint (56-px crops of 8×8 patches,
    LLaVA-NeXT's grid pinpoints scaled to them) with its processor to `directory`."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

    directory = Path(directory)
    tokenizer = make_tokenizer()
    base = build_tiny_llava_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<image>"))
    config = LlavaNextConfig(
        vision_config=base.vision_config, text_config=base.text_config, image_token_id=base.image_token_id,
        image_grid_pinpoints=TINY_GRID_PINPOINTS, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config)
    _spread_weights(model)
    with torch.no_grad():
        model.model.image_newline.normal_(0.0, 0.3)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, image_grid_pinpoints=TINY_GRID_PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=7,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_video_llava(directory: str | Path, seed: int = 0) -> Path:
    """Write a random tiny `VideoLlavaForConditionalGeneration` checkpoint (image and video towers of
    56-px, 8×8-patch CLIP-style encoders), its tokenizer (with `<video>`) and image processor.

    transformers' Video-LLaVA processor needs torchvision for videos; inputs are built with
    `llava_patch.models.media.video_llava_inputs` instead.
    """
    from transformers import VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

    directory = Path(directory)
    tokenizer = make_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<video>"]})
    base = build_tiny_llava_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<image>"))
    config = VideoLlavaConfig(
        vision_config=base.vision_config, text_config=base.text_config, image_token_id=base.image_token_id,
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = VideoLlavaForConditionalGeneration(config)
    _spread_weights(model)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    VideoLlavaImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(directory)
    return directory


def build_instruction_samples(directory: str | Path, count: int = 2) -> tuple[list[dict], Path]:
    """`count` samples in LLaVA's instruction format (llava_v1_5_mix665k.json) with generated images
    written under `directory`; returns (samples, image root)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    questions = ["What is in the image?", "Describe the colour of the object.", "Is there a dog in the image?"]
    samples = []
    for index in range(count):
        name = f"sample_{index}.png"
        random_image(100 + index, size=(60 + 10 * index, 80)).save(directory / name)
        samples.append({"id": f"sample-{index}", "image": name, "conversations": [
            {"from": "human", "value": f"<image>\n{questions[index % len(questions)]}"},
            {"from": "gpt", "value": "A picture."}]})
    return samples, directory
