"""Pydantic validation errors as one line a user can act on, and JSON files read into models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def problems(exc: ValidationError) -> str:
    """`field.path: message; ...` for every error of `exc`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'root'}: {e['msg']}" for e in exc.errors()
    )


def read_json_model(path: Path, model: type[M], error: type[Exception], what: str) -> M:
    """`path` parsed as `model`; `error` names the file and what is wrong with it (missing,
    unreadable, not UTF-8 text, not JSON, or not `what`)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise error(f"{path} could not be read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{path} is not {what}: {problems(exc)}") from None
