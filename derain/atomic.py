"""Atomic outputs: write to a temporary name beside the target, rename when complete, so a failed
or interrupted run never leaves a half-written file under the real name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DerainError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` with the same suffix (OpenCV picks formats by suffix);
    on success it is renamed to `path`, on error removed. The writer creates the file, so it gets
    the user's usual permissions (mkstemp would make it owner-only)."""
    path = Path(path)
    ensure_directory(path.parent)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside `path` with the same suffix."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def ensure_directory(path: str | Path) -> None:
    """Create the folder (and parents), or say in one line why it cannot be."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DerainError(f"{path}: cannot create output folder ({error.strerror or error})") from error
