"""Which of a run's config files a key came from, so a validation error can name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def _has_path(data: Any, path: Sequence[str | int]) -> bool:
    for key in path:
        in_list = isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data)
        if not (in_list or isinstance(data, dict) and key in data):
            return False
        data = data[key]
    return True


def key_origin(path: Sequence[str | int], files: Sequence[str | Path]) -> Path | None:
    """The last of `files` (loaded in order, later ones winning) that sets `path`, or None."""
    origin = None
    for file in files:
        data = yaml.safe_load(Path(file).read_text())
        if _has_path(data, path):
            origin = Path(file)
    return origin


def invalid_config_message(config: dict[str, Any], schema_file: str | Path, files: Sequence[str | Path]) -> str | None:
    """One paragraph on why `config` fails `schema_file`: where, what, and which of `files` set it
    (None when it validates)."""
    schema = yaml.safe_load(Path(schema_file).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    path = list(error.absolute_path)
    where = ".".join(str(key) for key in path) or "the top level"
    origin = key_origin(path, files)
    read = ", ".join(str(file) for file in files) or "none"
    source = f"set in {origin}" if origin else f"config files read: {read}"
    return f"invalid config at {where}: {error.message} ({source}); the options: docs/configuration.md"
