"""Atomic writes: a file or a whole directory is written beside its target and moved into place in one step.

A killed process then leaves either the previous version whole or the new one whole, never a mix. What a killed
write leaves behind is a hidden sibling (`.NAME.saving-*`), removed by the next save of the same target.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_STAGING, _OLD = ".saving-", ".old-"


def _sibling(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}{kind}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove_leftovers(target: Path) -> None:
    """Staging folders of earlier saves that were killed (one save per target at a time)."""
    for kind in (_STAGING, _OLD):
        for path in target.parent.glob(f".{target.name}{kind}*"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc older than 2.28, or another libc
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _move_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # it now holds the previous version
    else:  # two renames: for a moment the previous version is only at `.NAME.old-*`
        old = _sibling(target, _OLD)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old)


@contextmanager
def atomic_directory(target: Path, keep: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty folder beside `target`; when the block ends, it replaces `target` (`keep`: entries of the
    previous `target` moved over first, e.g. training checkpoints). An exception leaves `target` as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    staging = _sibling(target, _STAGING)
    staging.mkdir()
    moved: list[str] = []
    try:
        yield staging
        for name in keep:
            if (target / name).exists():
                os.replace(target / name, staging / name)
                moved.append(name)
        _move_into_place(staging, target)
    except BaseException:
        for name in moved:  # give the previous directory back what was taken from it
            if (staging / name).exists() and not (target / name).exists():
                os.replace(staging / name, target / name)
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def atomic_file(target: str | Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text handle whose content replaces `target` when the block ends without an exception."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, _STAGING)
    try:
        with staging.open("w", encoding="utf-8", newline=newline) as handle:
            yield handle
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
