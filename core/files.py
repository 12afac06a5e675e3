"""Atomic file writes: readers see the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write `text` to a temporary file in the same folder, flush it to disk, then rename it
    over `path` (one `os.replace`, atomic on POSIX)."""
    path = Path(path)
    tmp = _temporary_copy(path, text, fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temporary_copy(path: Path, text: str, fsync: bool) -> Path:
    """`text` in a new temporary file beside `path` (mode 0644), flushed to disk if `fsync`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_json_atomic(path: Path, data: Any, *, fsync: bool = True, indent: int = 2) -> None:
    """`data` as JSON (timestamps and other objects as their text), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=str) + "\n", fsync=fsync)


def link_exclusive(path: Path, text: str) -> bool:
    """Create `path` with `text` only if it does not exist yet (atomically; the first of several
    processes wins). True if this call created it."""
    path = Path(path)
    tmp = _temporary_copy(path, text, fsync=False)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
