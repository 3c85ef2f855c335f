import os
import stat

import pytest

from derain.atomic import atomic_path
from derain.errors import DerainError


def test_atomic_path_renames_on_success_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DerainError, match="cannot create output folder"), atomic_path(tmp_path / "file" / "o.png"):
        pass


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path):
    target = tmp_path / "out.png"
    stale = tmp_path / ".out.999999999-deadbeef.tmp.png"  # no such process
    mine = tmp_path / f".out.{os.getpid()}-cafe0000.tmp.png"  # this process: not stale
    stale.write_bytes(b"half")
    mine.write_bytes(b"busy")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert not stale.exists() and mine.exists() and target.read_bytes() == b"done"


def test_a_write_failure_is_one_line_naming_the_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(DerainError, match="out.png: cannot write .No space left on device"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")  # what a full disk raises
    assert list(tmp_path.iterdir()) == []
