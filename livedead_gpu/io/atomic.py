"""Writes that never leave a half-written file: a temporary name, then a rename.

A writer that is killed (even with SIGKILL) leaves at most a hidden temporary
``.NAME.XXXX.part`` next to the target, never a truncated target;
`remove_partials` sweeps those up. The data are flushed to disk (``fsync``)
before the rename, so a crash of the machine does not leave an empty file under
the final name either.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tifffile

PART_SUFFIX = ".part"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; the final file gets the mode a plain open() would give it
_FILE_MODE = 0o666 & ~_umask()


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write) -> Path:
    """Create ``path`` by ``write(tmp)`` on a temporary name beside it, then a rename.

    The parent folder is created; on any error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=path.parent)
    except OSError as e:   # the error names the file asked for, not a temporary name
        raise type(e)(e.errno, f"cannot write {str(path)!r}: {e.strerror}") from None
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_tiff(path, array, **kwargs) -> Path:
    """Write ``array`` as a zlib-compressed TIFF at ``path``, atomically.

    Extra keyword arguments go to `tifffile.imwrite` (e.g. ``imagej=True``,
    ``metadata=``).
    """
    kwargs.setdefault("compression", "zlib")
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, **kwargs))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) at ``path``, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def remove_partials(folder) -> list[Path]:
    """Delete the temporary files interrupted writers left under ``folder``; return them.

    Only names this module makes (``.NAME.XXXX.part``) are touched. Call it only when
    no writer is running in ``folder`` (e.g. under a lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.rglob(f".*{PART_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
