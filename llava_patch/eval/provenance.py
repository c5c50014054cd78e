"""Where a result came from: file hashes, the weights' fingerprint, the published model a checkpoint
is, library versions, the git commit and the device. The runner writes these into `manifest.json`.

`paper_model` names a checkpoint the way the papers' tables do ("llava-1.5-7b", "llava-1.5-13b",
"llava-next-7b", "video-llava-7b") from its `config.json` — architecture and language-model sizes,
not its path — so the paper tables match runs to published rows by what was evaluated.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from ..models.checkpoint import sha256  # noqa: F401  (the runner and the training record hash files with it)
from .files import read_json

PACKAGES = ("torch", "transformers", "accelerate", "llava-patch", "llava-torch")

# Vicuna sizes (hidden size, layers) of the published models; missing fields of a transformers
# `text_config` take LlamaConfig's defaults (the 7B sizes), as transformers itself does.
_LLAMA_DEFAULT = {"hidden_size": 4096, "num_hidden_layers": 32}
_SIZES = {(4096, 32): "7b", (5120, 40): "13b"}


def weights_fingerprint(directory: str | Path) -> str | None:
    """sha256 over config.json and, per weight file, its name, size and first and last MiB: cheap for
    14 GB checkpoints, and changes with any re-download or conversion. None for a hub id."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.name == "config.json" or path.suffix in (".safetensors", ".bin"):
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}".encode())
            with open(path, "rb") as file:
                digest.update(file.read(1 << 20))
                file.seek(max(0, size - (1 << 20)))
                digest.update(file.read())
    return digest.hexdigest()


def paper_model(model: str | Path) -> str | None:
    """The published model a checkpoint (directory, or hub id already in the local cache) is, read from
    its config.json; None when there is no config or it is no model of the papers' tables."""
    config_file = _config_file(model)
    return paper_model_of(read_json(config_file)) if config_file else None


def paper_model_of(config: dict) -> str | None:
    """The published model name of a checkpoint configuration (either layout), or None.

    Original LLaVA layout (`llava_llama`): sizes at the top level; `image_aspect_ratio: anyres` is
    LLaVA-NeXT (1.6), an `mm_video_tower` is Video-LLaVA. transformers layout: `llava`, `llava_next`,
    `video_llava` with a Llama `text_config`. Only Vicuna (Llama) language models of 7B / 13B sizes
    are recognised, and of those only the ones the papers evaluate."""
    model_type = config.get("model_type")
    if model_type == "llava_llama":
        text = config
        family = ("video-llava" if "mm_video_tower" in config else
                  "llava-next" if config.get("image_aspect_ratio") == "anyres" else "llava-1.5")
    elif model_type in ("llava", "llava_next", "video_llava"):
        text = {**_LLAMA_DEFAULT, **config.get("text_config", {})}
        if text.get("model_type", "llama") != "llama":
            return None
        family = {"llava": "llava-1.5", "llava_next": "llava-next", "video_llava": "video-llava"}[model_type]
    else:
        return None
    size = _SIZES.get((text.get("hidden_size"), text.get("num_hidden_layers")))
    name = f"{family}-{size}" if size else None
    return name if name in ("llava-1.5-7b", "llava-1.5-13b", "llava-next-7b", "video-llava-7b") else None


def _config_file(model: str | Path) -> Path | None:
    path = Path(model)
    if path.is_dir():
        return path / "config.json" if (path / "config.json").is_file() else None
    try:  # a hub id: only what is already downloaded, never the network
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(model), "config.json")
    except (ImportError, ValueError):
        return None
    return Path(cached) if isinstance(cached, str) else None


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def git_commit() -> str | None:
    """The commit of the llava_patch source tree (None outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})"
