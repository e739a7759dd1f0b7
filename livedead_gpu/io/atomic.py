"""Writes that never leave a half-written file: a temporary name, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tifffile


def _replace(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
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
    return _replace(path, lambda tmp: tifffile.imwrite(tmp, array, **kwargs))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) at ``path``, atomically."""
    return _replace(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
