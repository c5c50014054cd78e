"""The JSON files fitted on calibration data that methods read (FitPrune's recipes in `fitprune_recipe`,
SparseVLM's settings in `sparsevlm_settings`): reading them with errors that name the file, checking
their format tag, writing them to new files only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_fitted(path: str | Path, error: type[ValueError], missing: str) -> Any:
    """The JSON content of `path`; `missing` ends the FileNotFoundError, `error` is raised for the rest."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise error(f"{path}: a directory, not a file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as failure:
        raise error(f"{path}: not valid JSON (line {failure.lineno}, column {failure.colno}: {failure.msg})") from None


def check_format(data: Any, where: str, format: str, version: int, error: type[ValueError]) -> None:
    """`data` is a JSON object tagged `format`, `format_version` = `version`."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != format:
        raise error(f"{where}: field 'format' is {data.get('format')!r}, expected {format!r}")
    if data.get("format_version") != version:
        raise error(f"{where}: field 'format_version' is {data.get('format_version')!r}; this version of "
                    f"llava_patch reads version {version}")


def write_new(path: str | Path, data: dict, what: str) -> Path:
    """Write `data` as JSON to a new file; an existing one is never overwritten (`what`: "the recipe is")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as file:
            file.write(json.dumps(data, indent=2) + "\n")
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists; {what} not overwritten (choose a new --output)") from None
    return path
