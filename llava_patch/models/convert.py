"""Convert LLaVA-1.5 checkpoints between the original LLaVA layout and transformers' llava-hf layout,
and compare two checkpoints of either layout tensor by tensor.

Original (liuhaotian/llava-v1.5-*): a Llama checkpoint (`model.*`, `lm_head.weight`) plus the projector
`model.mm_projector.{0,2}`; config.json holds Llama fields and `mm_*` fields; the vision tower is a
separate CLIP checkpoint named by `mm_vision_tower`; the image is token −200, outside the vocabulary.
llava-hf: one `LlavaForConditionalGeneration` checkpoint with the vision tower inside, a processor,
and an added `<image>` token whose embedding and output rows are appended to the vocabulary.

The appended rows are set to the mean of the existing rows (as transformers' own conversion does):
the input row is always replaced by image features, and a mean output row can never be the argmax.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import load_state_dict, read_config, vision_tower_path
from .prompting import IMAGE_TOKEN
_TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
    "pretraining_tp", "tie_word_embeddings", "rope_theta", "rope_scaling", "attention_bias",
    "bos_token_id", "eos_token_id", "pad_token_id",
)
# (original prefix, transformers in-memory prefix), most specific first; the vision tower is separate.
_PREFIXES = [
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.", "model.language_model."),
    ("lm_head.", "lm_head."),
]
_VOCAB_ROWS = ("model.language_model.embed_tokens.weight", "lm_head.weight")


def _rename(name: str, to_hf: bool) -> str:
    for original, hf in _PREFIXES:
        old, new = (original, hf) if to_hf else (hf, original)
        if name.startswith(old):
            return new + name[len(old) :]
    layout = "an original-format" if to_hf else "a transformers"
    raise ValueError(f"unexpected tensor {name!r} in {layout} LLaVA checkpoint")


def _original_hf_state(directory: Path, config: dict) -> dict[str, torch.Tensor]:
    """An original checkpoint's tensors under transformers' names, its vision tower included."""
    from transformers import CLIPVisionModel

    state = {}
    for name, tensor in load_state_dict(directory).items():
        if not name.startswith("model.vision_tower."):  # a tower copy some checkpoints carry; the original loader ignores it too
            state[_rename(name, to_hf=True)] = tensor
    tower = CLIPVisionModel.from_pretrained(vision_tower_path(directory, config), dtype="auto")
    state.update({f"model.vision_tower.{name}": tensor for name, tensor in tower.state_dict().items()})
    return state


def _check_original(config: dict, path: Path) -> None:
    expected = {"mm_projector_type": "mlp2x_gelu", "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat"}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ValueError(f"{path}: {key}={config[key]!r}; conversion handles LLaVA-1.5 checkpoints ({key}={value!r})")
    if "mm_vision_tower" not in config:
        raise ValueError(f"{path}: no 'mm_vision_tower'; not an original-format LLaVA checkpoint")


def original_to_hf(source: str | Path, destination: str | Path) -> Path:
    """Write an original LLaVA-1.5 checkpoint as a transformers `LlavaForConditionalGeneration` one."""
    from transformers import (AutoImageProcessor, AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    source, destination = Path(source), Path(destination)
    _refuse_existing(destination)
    config_path = source / "config.json"
    config = read_config(config_path)
    _check_original(config, config_path)
    tower = vision_tower_path(source, config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    vocab = config["vocab_size"]
    if len(tokenizer) != vocab:
        raise ValueError(f"{source}: tokenizer has {len(tokenizer)} tokens but config.json vocab_size is {vocab}")
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.padding_side = "left"
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    text_fields = {key: config[key] for key in _TEXT_FIELDS if key in config}
    text_fields["vocab_size"] = vocab + 1
    if text_fields.get("pad_token_id") is None and tokenizer.pad_token_id is not None:
        text_fields["pad_token_id"] = tokenizer.pad_token_id
    hf_config = LlavaConfig(
        text_config=LlamaConfig(**text_fields).to_dict(),
        vision_config=CLIPVisionConfig.from_pretrained(tower).to_dict(),
        image_token_id=image_token_id,
        vision_feature_layer=config.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
    )
    hf_config.text_config.model_type = "llama"

    state = _original_hf_state(source, config)
    for name in _VOCAB_ROWS:
        rows = state[name]
        state[name] = torch.cat([rows, rows.float().mean(dim=0, keepdim=True).to(rows.dtype)])
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(hf_config)
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(destination)

    image_processor = AutoImageProcessor.from_pretrained(tower)
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=hf_config.vision_config.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    processor.save_pretrained(destination)
    if (source / "tokenizer.model").is_file():  # llava-hf repositories carry it too; the way back needs it
        (destination / "tokenizer.model").write_bytes((source / "tokenizer.model").read_bytes())
    return destination


def hf_to_original(source: str | Path, destination: str | Path) -> Path:
    """Write a transformers LLaVA-1.5 checkpoint in the original LLaVA layout.

    The vision tower goes to `<destination>/vision_tower` (config.json names it by absolute path, as the
    original loader resolves paths against the working directory). The tokenizer is rebuilt from the
    source's sentencepiece `tokenizer.model` without the added `<image>` token.
    """
    from transformers import AutoImageProcessor, CLIPVisionModel, LlavaForConditionalGeneration

    source, destination = Path(source), Path(destination)
    _refuse_existing(destination)
    read_config(source / "config.json")
    spm_model = source / "tokenizer.model"
    if not spm_model.is_file():
        raise FileNotFoundError(f"{spm_model}: missing; the original LLaVA tokenizer is rebuilt from it")
    model = LlavaForConditionalGeneration.from_pretrained(source, dtype="auto")
    config = model.config
    vocab = config.image_token_id
    if vocab >= config.text_config.vocab_size:
        raise ValueError(f"{source}: image_token_id {vocab} is not an appended row of the {config.text_config.vocab_size}-row vocabulary")

    destination.mkdir(parents=True)
    tower_dir = destination / "vision_tower"
    tower = CLIPVisionModel(config.vision_config)
    tower.load_state_dict(model.model.vision_tower.state_dict())
    tower.to(model.dtype).save_pretrained(tower_dir)
    AutoImageProcessor.from_pretrained(source).save_pretrained(tower_dir)

    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("model.vision_tower."):
            continue
        state[_rename(name, to_hf=False)] = tensor[:vocab].contiguous() if name in _VOCAB_ROWS else tensor.contiguous()
    save_file(state, destination / "model.safetensors", metadata={"format": "pt"})

    text = config.text_config.to_dict()
    fields = {key: text[key] for key in _TEXT_FIELDS if key in text}
    fields["rope_theta"] = (text.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    fields["vocab_size"] = vocab
    fields.update(
        architectures=["LlavaLlamaForCausalLM"], model_type="llava_llama", torch_dtype=str(model.dtype).split(".")[-1],
        mm_vision_tower=str(tower_dir.resolve()), mm_hidden_size=config.vision_config.hidden_size,
        mm_projector_type="mlp2x_gelu", mm_vision_select_layer=config.vision_feature_layer,
        mm_vision_select_feature="patch", mm_patch_merge_type="flat", image_aspect_ratio="pad",
        mm_use_im_start_end=False, mm_use_im_patch_token=False, tokenizer_padding_side="right", use_mm_proj=True,
    )
    (destination / "config.json").write_text(json.dumps(fields, indent=2) + "\n")
    (destination / "tokenizer.model").write_bytes(spm_model.read_bytes())
    source_tokens = read_config(source / "tokenizer_config.json") if (source / "tokenizer_config.json").exists() else {}
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "model_max_length": 2048, "padding_side": "right",
        **{key: source_tokens[key] for key in ("bos_token", "eos_token", "unk_token", "legacy") if key in source_tokens},
    }
    tokenizer_config["pad_token"] = tokenizer_config.get("unk_token", "<unk>")
    (destination / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return destination


def checkpoint_state(directory: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint of either layout as tensors under transformers' in-memory names."""
    from transformers import LlavaForConditionalGeneration

    directory = Path(directory)
    config = read_config(directory / "config.json")
    if "mm_vision_tower" in config:
        _check_original(config, directory / "config.json")
        return _original_hf_state(directory, config)
    return LlavaForConditionalGeneration.from_pretrained(directory, dtype="auto").state_dict()


def compare_checkpoints(first: str | Path, second: str | Path, atol: float = 0.0) -> dict:
    """Tensor-by-tensor comparison of two checkpoints (either layout). Vocabulary matrices are compared
    on the rows both have (the `<image>` row exists only in the transformers layout)."""
    a, b = checkpoint_state(first), checkpoint_state(second)
    only_first, only_second = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    mismatched, largest = [], 0.0
    for name in sorted(set(a) & set(b)):
        x, y = a[name], b[name]
        if name in _VOCAB_ROWS:
            rows = min(x.shape[0], y.shape[0])
            x, y = x[:rows], y[:rows]
        if x.shape != y.shape:
            mismatched.append(f"{name}: shape {tuple(x.shape)} vs {tuple(y.shape)}")
            continue
        difference = (x.float() - y.float()).abs().max().item() if x.numel() else 0.0
        largest = max(largest, difference)
        if difference > atol:
            mismatched.append(f"{name}: max |difference| {difference:.3g}")
    return {
        "same_model": not (only_first or only_second or mismatched),
        "tensors_compared": len(set(a) & set(b)),
        "max_abs_difference": largest,
        "atol": atol,
        "only_in_first": only_first,
        "only_in_second": only_second,
        "mismatched": mismatched,
    }


def _refuse_existing(destination: Path) -> None:
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination}: exists and is not empty; nothing is overwritten")
