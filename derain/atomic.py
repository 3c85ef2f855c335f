"""Atomic outputs: write to a temporary name beside the target, rename when complete, so a failed
or interrupted run never leaves a half-written file under the real name."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
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
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        _discard(tmp)
        raise DerainError(f"{path}: cannot write ({error.strerror or error})") from error
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    """Remove a temporary (a file, or a folder written whole: a model repository); where even that
    fails (a read-only folder) the write error is what matters."""
    try:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside `path` with the same suffix, carrying the writer's process id."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by a killed run (SIGKILL, power loss): their process is gone."""
    for stale in path.parent.glob(f".{glob.escape(path.stem)}.*-*.tmp{glob.escape(path.suffix)}"):
        pid = stale.name[len(path.stem) + 2 :].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _discard(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def ensure_directory(path: str | Path) -> None:
    """Create the folder (and parents), or say in one line why it cannot be."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DerainError(f"{path}: cannot create output folder ({error.strerror or error})") from error
