"""The two readers every evaluation file goes through, JSON Lines and JSON (errors name the file, and
the line where the text is malformed, as "<file>, line <n>: ..."), and the one way outputs are
written: atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSON Lines file. A missing file raises
    FileNotFoundError naming it; a malformed line, ValueError naming the file and line."""
    path = Path(path)
    rows = []
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: malformed JSON ({error.msg})") from None
    return rows


def read_json(path: str | Path) -> Any:
    """The value of a JSON file. A missing file raises FileNotFoundError naming it; malformed JSON,
    ValueError naming the file and the line of the error."""
    path = Path(path)
    with _open(path) as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: malformed JSON ({error.msg})") from None


def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return path.open(encoding="utf-8")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` all at once: a temporary file beside it, flushed to disk, then renamed
    over it, so a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path
