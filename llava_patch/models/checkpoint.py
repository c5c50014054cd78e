"""A checkpoint directory's files: its config, its weight files, its vision tower's path.

Errors name the file (and the line, for malformed JSON)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_config(path: Path) -> dict:
    """A checkpoint's JSON config, or an error that names the file (and the line, if malformed)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a checkpoint directory needs its config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from error


def check_weights(directory: Path) -> None:
    """Every weight file a checkpoint names must exist: single files or a sharded index."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.exists():
            shards = set(read_config(index).get("weight_map", {}).values())
            missing = sorted(shard for shard in shards if not (directory / shard).is_file())
            if missing:
                raise FileNotFoundError(f"{index}: lists {', '.join(missing)}, missing from {directory}")
            return
    if not any((directory / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise FileNotFoundError(f"{directory}: no weights (model.safetensors, pytorch_model.bin or a sharded index)")


def load_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: safetensors preferred, .bin read with weights_only."""
    check_weights(directory)
    for index_name, reader in (("model.safetensors.index.json", load_file), ("pytorch_model.bin.index.json", _load_bin)):
        index = directory / index_name
        if index.exists():
            state = {}
            for shard in sorted(set(read_config(index)["weight_map"].values())):
                state.update(reader(directory / shard))
            return state
    single = directory / "model.safetensors"
    return load_file(single) if single.exists() else _load_bin(directory / "pytorch_model.bin")


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def vision_tower_path(checkpoint: Path, config: dict) -> str:
    """`mm_vision_tower` as a loadable path or hub id (relative paths are relative to the checkpoint)."""
    tower = config["mm_vision_tower"]
    if not Path(tower).is_absolute() and (checkpoint / tower).exists():
        return str((checkpoint / tower).resolve())
    return tower
