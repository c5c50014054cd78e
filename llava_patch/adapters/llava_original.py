"""LLaVA-1.5 and LLaVA-NeXT (v1.6) on the original LLaVA codebase (`llava` package, v1.2.2.post1).

The original model splices whatever `encode_images` returns into the sequence in place of each
single `IMAGE_TOKEN_INDEX` (−200), with contiguous positions, so no placeholders need resizing.

- LLaVA-1.5 (`mm_patch_merge_type="flat"`): `encode_images` is wrapped to run the shared encoder and
  selector and project only the kept patches.
- LLaVA-NeXT (`image_aspect_ratio="anyres"`): the original merges crops inside
  `prepare_inputs_labels_for_multimodal` assuming full crops, so that method is wrapped: the crops are
  encoded and selected here, laid out by `llava_patch.anyres` ("native": the checkpoint's
  spatial_unpad with newlines; "paper": FasterVLM's fixed 672×672 grid without unpad or newlines,
  set in the config while patched), and handed to the original method through `encode_images`.

`prepare_inputs_labels_for_multimodal` also measures how many visual tokens each sample carried
into the language model.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..anyres import MODES, NextLayout
from ..patch import PatchConfig
from ..registry import find_encoder, register_adapter
from ..tower import encode_and_select, project, select_layer_index
from .base import Adapter, bind_call

IMAGE_TOKEN_INDEX = -200  # llava.constants.IMAGE_TOKEN_INDEX


def _llava_model_class():
    try:
        from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM
    except ImportError:
        return None
    return LlavaLlamaForCausalLM


@register_adapter
class OriginalLlavaAdapter(Adapter):
    model_description = ("original LLaVA codebase LlavaLlamaForCausalLM (llava-torch==1.2.2.post1; LLaVA-1.5, "
                         "and LLaVA-NeXT with option mode='native'|'paper')")
    options = {"mode": "native"}

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        model_class = _llava_model_class()
        return model_class is not None and isinstance(model, model_class)

    def __init__(self, model, mode: str = "native") -> None:
        super().__init__(model)
        config = model.config
        self.anyres = getattr(config, "image_aspect_ratio", None) == "anyres"
        merge = getattr(config, "mm_patch_merge_type", "flat")
        if not self.anyres and mode not in MODES:
            raise ValueError(f"mode={mode!r}; LLaVA-NeXT modes are {', '.join(MODES)}")
        if not self.anyres and (merge != "flat" or mode != "native"):
            raise ValueError(f"mm_patch_merge_type={merge!r}, mode={mode!r}: without image_aspect_ratio='anyres' "
                             "this is a LLaVA-1.5 checkpoint (flat merge; mode applies to LLaVA-NeXT)")
        if self.anyres and mode == "native" and merge != "spatial_unpad":
            raise ValueError(f"mm_patch_merge_type={merge!r}: native mode is the checkpoint's spatial_unpad layout")
        self.vision_tower = model.get_vision_tower()
        if self.vision_tower is None or not getattr(self.vision_tower, "is_loaded", False):
            raise ValueError("the model's vision tower is not loaded; load the checkpoint with load_pretrained_model first")
        if self.vision_tower.select_feature != "patch":
            raise ValueError(f"mm_vision_select_feature={self.vision_tower.select_feature!r}: pruning needs 'patch'")
        encoder = find_encoder(self.vision_tower.vision_tower)  # the CLIPVisionModel inside CLIPVisionTower
        self.select_layer = select_layer_index(self.vision_tower.select_layer, len(encoder.layers))
        self.side = self.vision_tower.num_patches_per_side
        self.num_patches = self.vision_tower.num_patches  # per crop
        self.accepts_variable_counts = not self.anyres
        self.layout = NextLayout(config, mode, self.vision_tower.config.image_size, self.side) if self.anyres else None
        self.original_merge = merge
        self.patch: PatchConfig | None = None

    def tokens_per_image(self, keep: int) -> int | None:
        return self.layout.tokens_per_image(keep) if self.anyres else keep

    def install(self, config: PatchConfig) -> None:
        self.patch = config
        model, recorder = self.model, config.recorder
        if self.anyres:
            self.layout.install()
            if self.layout.mode == "paper":
                model.config.mm_patch_merge_type = "spatial"  # no unpad, no newline
        original_prepare, original_forward, original_generate = (
            model.prepare_inputs_labels_for_multimodal, model.forward, model.generate)
        prepared: list[list[torch.Tensor]] = []  # NeXT features made by the wrapper below, for encode_images
        selected: list[tuple[list, list]] = []  # (selection, scores) of the current call, reported with its tokens
        feature_counts: list[int] = []  # per image of the current call, for the visual-token mask

        def encode_images(images: torch.Tensor):
            features = prepared.pop() if prepared else self._project(images, selected)
            feature_counts[:] = [len(image) for image in features]
            return features

        @functools.wraps(original_prepare)
        def prepare_inputs_labels_for_multimodal(*args, **kwargs):
            arguments = bind_call(original_prepare, args, kwargs)
            images, input_ids = arguments.get("images"), arguments["input_ids"]
            if images is None or input_ids.shape[1] == 1:
                return original_prepare(**arguments)
            if type(images) is list or images.ndim == 5:
                prepared.append(self._next_features(images, arguments.get("image_sizes"), selected))
                # A 4-D stand-in takes the original's one-crop branch, which calls encode_images once.
                arguments["images"] = torch.empty(len(prepared[0]), 0, 0, 0)
            outputs = original_prepare(**arguments)
            attention_mask = arguments.get("attention_mask")
            recorder.record(*selected.pop(), _visual_tokens(input_ids, attention_mask, outputs))
            if config.visual_positions is not None:
                config.visual_positions(self._image_mask(input_ids, attention_mask, feature_counts, outputs[4].shape[1]))
            return outputs

        @functools.wraps(original_forward)
        def forward(*args, **kwargs):
            with recorder.call():
                return original_forward(*args, **kwargs)

        @functools.wraps(original_generate)
        def generate(*args, **kwargs):
            with recorder.call():
                return original_generate(*args, **kwargs)

        model.encode_images = encode_images
        model.prepare_inputs_labels_for_multimodal = prepare_inputs_labels_for_multimodal
        model.forward, model.generate = forward, generate

    def language_model(self):
        return self.model.get_model()  # LlavaLlamaModel is a transformers LlamaModel

    def uninstall(self) -> None:
        for name in ("encode_images", "prepare_inputs_labels_for_multimodal", "forward", "generate"):
            delattr(self.model, name)
        if self.anyres:
            self.layout.restore()
            self.model.config.mm_patch_merge_type = self.original_merge
        self.patch = None

    def _project(self, images: torch.Tensor, selected: list) -> torch.Tensor:
        """LLaVA-1.5: one crop per image, its kept patches projected."""
        selection = self._select(images)
        selected.append((list(selection.kept), list(selection.scores)))
        features = selection.features
        features = features.to(images.dtype) if isinstance(features, torch.Tensor) else [f.to(images.dtype) for f in features]
        return project(self.model.get_model().mm_projector, features)

    def _image_mask(self, input_ids, attention_mask, feature_counts: list[int], length: int) -> torch.Tensor:
        """Where the original's `prepare_inputs_labels_for_multimodal` put image features: each −200 of a
        row's attended tokens expands to its image's feature count; rows padded on the config's side."""
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        left = getattr(self.model.config, "tokenizer_padding_side", "right") == "left"
        result = torch.zeros(input_ids.shape[0], length, dtype=torch.bool, device=input_ids.device)
        counts = iter(feature_counts)
        for row, (ids, attended) in enumerate(zip(input_ids, mask)):
            flags = []
            for token in ids[attended].tolist():
                flags += [True] * next(counts) if token == IMAGE_TOKEN_INDEX else [False]
            span = slice(length - len(flags), length) if left else slice(0, len(flags))
            result[row, span] = torch.tensor(flags, dtype=torch.bool)
        return result

    def _select(self, crops: torch.Tensor):
        tower, patch = self.vision_tower, self.patch
        return encode_and_select(tower.vision_tower, crops.to(device=tower.device, dtype=tower.dtype), patch.selector,
                                 patch.keep, self.select_layer, patch.stop_at_select_layer)

    def _next_features(self, images, image_sizes, selected: list) -> list[torch.Tensor]:
        from llava.mm_utils import get_anyres_image_grid_shape
        from llava.model.llava_arch import unpad_image

        model, config = self.model, self.model.config
        images = [crops if crops.ndim == 4 else crops.unsqueeze(0) for crops in images]
        selection = self._select(torch.cat(images))
        projected = model.get_model().mm_projector(selection.features.to(images[0].dtype))

        def grid_shape(size) -> tuple[int, int]:  # the original gives (cols, rows)
            cols, rows = get_anyres_image_grid_shape(size, config.image_grid_pinpoints, self.vision_tower.config.image_size)
            return rows, cols

        features, kept, scores = self.layout.arrange(selection.kept, selection.scores, projected,
                                                     [crops.shape[0] for crops in images], image_sizes, grid_shape,
                                                     unpad_image, model.get_model().image_newline)
        selected.append((kept, scores))
        return features


def _visual_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, outputs: tuple) -> list[int]:
    """Per row: sequence length the LLM received minus the row's text tokens."""
    new_attention_mask, new_embeds = outputs[2], outputs[4]
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    text = (mask & (input_ids != IMAGE_TOKEN_INDEX)).sum(dim=1)
    received = (
        new_attention_mask.bool().sum(dim=1)
        if new_attention_mask is not None
        else torch.full_like(text, new_embeds.shape[1])
    )
    return (received - text).tolist()
