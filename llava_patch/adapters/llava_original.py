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

from ..anyres import MODES, arrange_crops, paper_grid_pinpoints
from ..registry import register_adapter
from ..vision import encode_and_select, project
from .base import Adapter, bind_call, select_layer_index

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
        if mode not in MODES:
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
        clip = self.vision_tower.vision_tower
        self.select_layer = select_layer_index(self.vision_tower.select_layer, clip.config.num_hidden_layers)
        self.side = self.vision_tower.num_patches_per_side
        self.num_patches = self.vision_tower.num_patches  # per crop
        self.mode = mode
        self.accepts_variable_counts = not self.anyres
        self.original_layout = (merge, getattr(config, "image_grid_pinpoints", None))
        self.handle = None

    def tokens_per_image(self, keep: int) -> int | None:
        if not self.anyres:
            return keep
        return 5 * keep if self.mode == "paper" else None  # base + 2×2 grid; native depends on the image

    def install(self, handle) -> None:
        self.handle = handle
        model, config = self.model, self.model.config
        if self.anyres and self.mode == "paper":
            config.mm_patch_merge_type = "spatial"  # no unpad, no newline
            config.image_grid_pinpoints = paper_grid_pinpoints(self.vision_tower.config.image_size)
        original_prepare = model.prepare_inputs_labels_for_multimodal
        prepared: list[list[torch.Tensor]] = []  # NeXT features made by the wrapper below, for encode_images
        feature_counts: list[int] = []  # per image of the current call, for FastV's image-token mask

        def encode_images(images: torch.Tensor):
            features = prepared.pop() if prepared else self._project(images)
            feature_counts[:] = [len(image) for image in features]
            return features

        @functools.wraps(original_prepare)
        def prepare_inputs_labels_for_multimodal(*args, **kwargs):
            arguments = bind_call(original_prepare, args, kwargs)
            images, input_ids = arguments.get("images"), arguments["input_ids"]
            if images is None or input_ids.shape[1] == 1:
                return original_prepare(**arguments)
            if type(images) is list or images.ndim == 5:
                prepared.append(self._next_features(images, arguments.get("image_sizes")))
                # A 4-D stand-in takes the original's one-crop branch, which calls encode_images once.
                arguments["images"] = torch.empty(len(prepared[0]), 0, 0, 0)
            outputs = original_prepare(**arguments)
            handle.last_visual_tokens = _visual_tokens(input_ids, arguments.get("attention_mask"), outputs)
            if handle.llm_state is not None:
                handle.llm_state.image_mask = self._image_mask(input_ids, arguments.get("attention_mask"), feature_counts,
                                                               outputs[4].shape[1])
            return outputs

        model.encode_images = encode_images
        model.prepare_inputs_labels_for_multimodal = prepare_inputs_labels_for_multimodal

    def language_model(self):
        return self.model.get_model()  # LlavaLlamaModel is a transformers LlamaModel

    def uninstall(self) -> None:
        del self.model.encode_images
        del self.model.prepare_inputs_labels_for_multimodal
        self.model.config.mm_patch_merge_type, pinpoints = self.original_layout
        if pinpoints is not None:
            self.model.config.image_grid_pinpoints = pinpoints
        self.handle = None

    def _project(self, images: torch.Tensor) -> torch.Tensor:
        """LLaVA-1.5: one crop per image, its kept patches projected."""
        selection = self._select(images)
        self.handle.record(list(selection.kept), list(selection.scores))
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
        tower, handle = self.vision_tower, self.handle
        return encode_and_select(tower.vision_tower, crops.to(device=tower.device, dtype=tower.dtype), handle.selector,
                                 handle.vision_keep, self.select_layer, handle.stop_at_select_layer)

    def _next_features(self, images, image_sizes) -> list[torch.Tensor]:
        from llava.mm_utils import get_anyres_image_grid_shape
        from llava.model.llava_arch import unpad_image

        model, config = self.model, self.model.config
        images = [crops if crops.ndim == 4 else crops.unsqueeze(0) for crops in images]
        counts = [crops.shape[0] for crops in images]
        selection = self._select(torch.cat(images))
        projected = model.get_model().mm_projector(selection.features.to(images[0].dtype))
        features = []
        for kept, crops, size in zip(selection.kept.split(counts), projected.split(counts), image_sizes):
            cols, rows = get_anyres_image_grid_shape(size, config.image_grid_pinpoints, self.vision_tower.config.image_size)
            unpad = lambda index_map, size=size: unpad_image(index_map, size)  # noqa: E731
            features.append(arrange_crops(kept, crops, (rows, cols), self.side, self.mode, unpad, model.get_model().image_newline))
        self.handle.record([list(kept) for kept in selection.kept.split(counts)],
                           [list(scores) for scores in selection.scores.split(counts)])
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
