"""Stacks: TCYX TIFFs of one position (well x site) each, or of several, read with tifffile.

A multi-page OME-, ImageJ- or plain TIFF with axes ``T``, ``C``, ``Y``, ``X`` (``T``
optional, ``Z`` of size 1 allowed). A file of one position takes well and site from its
name (``A1.ome.tif``, ``B02_s2.tif``, Micro-Manager's ``exp_MMStack_B2-Site_1.ome.tif``,
or ``pattern=``); otherwise, for a Micro-Manager file of one position read alone, from its
position label where that names a well, else its stem is the well and the site 0. A file of several
positions is an OME-TIFF of several image series (previews left out) or a Micro-Manager
dataset, whose positions tifffile gathers from all of its files into an axis ``R``
whichever of them is opened: each position is read once, a site named by its OME Image
name or Micro-Manager position label where that names a well (``B2-Site_3``), else by the
file's well and the position's index. The planes of such a position are read where the
file puts them (`_addresses`): reopening the file for each frame would parse the metadata
of every position each time.

`livedead_gpu.io.open_plate` is the entry point (``layout="stack"``); `_stack_plate` builds
the `StackPlate`.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tifffile

from .plate import (
    CHANNEL_ROLES,
    DEFAULT_CHANNEL_MAP,
    _MM_SITE,
    _SERIES_NAME,
    _STACK_NAME,
    _THUMBNAIL,
    Frame,
    FrameKey,
    Plate,
    PlateError,
    _default_role,
    _key_text,
    _norm,
    _ome_images,
    _pixel_size,
    _tiffs,
    _why,
    parse_channel_map,
)


@dataclass(frozen=True)
class _Stack:
    path: Path
    shape: tuple          # (T, C, Y, X)
    axes: str             # series axes as stored
    channel_names: tuple  # one per C
    roles: dict           # role -> channel index
    pixel_size: float | None
    dims: tuple           # sizes of the axes before Y, X, in stored order
    series: int = 0       # index into the file's ``tif.series``
    position: int = 0     # index along R (Micro-Manager's positions)
    where: str = ""       # "series=1" or "r=1" in a file of several positions, else ""
    files: tuple = ()     # the files its planes lie in (in a Micro-Manager dataset, another of its files)
    planes: dict | None = None   # (t, c) -> (file, byte offset) of each plane's pixels, where read directly
    plane: tuple = ()     # (dtype, shape) of those planes
    z: int = 0            # the focal plane read, an index along Z
    n_z: int = 1          # focal planes the stack holds


@dataclass(eq=False)
class StackPlate(Plate):
    """TCYX TIFF stacks (OME, ImageJ or plain multi-page), one position each or several."""

    stacks: dict = field(default_factory=dict)   # (well, site) -> _Stack
    _keys: list = field(default_factory=list)
    broken: dict = field(default_factory=dict)   # (well, site) -> Path of a stack that did not open

    def keys(self):
        return self._keys

    def sources(self, key):
        s = self.stacks.get((key[0], key[1]))
        if s is None:
            path = self.broken.get((key[0], key[1]))
            return [path] if path else []
        return [s.path] + [p for p in s.files if p != s.path]

    def roles(self, key):
        s = self.stacks.get((key[0], key[1]))
        if s is None:
            return {}
        # The focal plane read is part of what a resumed export compares (one file, another plane).
        return dict(s.roles) | ({"z": s.z} if s.n_z > 1 else {})

    def read(self, key) -> Frame:
        key = self._problem(key)
        s = self.stacks[(key.well, key.site)]
        at = (f"{s.where}," if s.where else "") + f"t={key.time}" + (f",z={s.z}" if s.n_z > 1 else "")
        try:
            if s.planes is not None:
                planes = [_plane_at(*s.planes[key.time, s.roles[role]], *s.plane) for role in CHANNEL_ROLES]
            else:
                index = [_page_index(s, key.time, s.roles[role]) for role in CHANNEL_ROLES]
                with tifffile.TiffFile(s.path) as tif:
                    # The three planes in one call, which opens the other files of a Micro-Manager
                    # dataset as it reads them (a page of one is read from a closed file otherwise).
                    planes = tif.asarray(series=s.series, key=index, maxworkers=1)
        except PlateError:
            raise
        except Exception as e:
            raise PlateError(f"cannot read {str(s.path)!r} ({at}): {_why(e)}") from None
        arrays = {}
        for role, a in zip(CHANNEL_ROLES, planes):
            arrays[role] = np.squeeze(a)
            if arrays[role].ndim != 2:
                raise PlateError(f"{str(s.path)!r}: plane {at} is {a.shape}, not 2-D")
        return Frame(key, *(arrays[r] for r in CHANNEL_ROLES),
                     channel_names={r: s.channel_names[s.roles[r]] for r in CHANNEL_ROLES},
                     sources={r: f"{s.path}[{at},c={s.roles[r]}]" for r in CHANNEL_ROLES},
                     pixel_size=s.pixel_size)


def _plane_at(path, offset, dtype, shape):
    """One uncompressed plane of ``dtype`` and ``shape`` at byte ``offset`` of ``path``."""
    count = int(np.prod(shape))
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = np.fromfile(fh, dtype, count)
    except OSError as e:
        raise PlateError(f"cannot read {str(path)!r}: {_why(e)}") from None
    if data.size < count:
        raise PlateError(f"cannot read {str(path)!r}: it ends inside the plane at byte {offset} (a file cut short "
                         "since the plate was opened?)")
    # native byte order, as tifffile hands planes back
    return data.reshape(shape).astype(data.dtype.newbyteorder("="), copy=False)


def _addresses(axes, dims, pages, z=0):
    """(t, c) -> (file, byte offset) of each plane at focal plane ``z`` of one position's ``pages``
    (in stored order over ``axes``' leading axes but R), and their (dtype, shape); None unless every plane is
    uncompressed, in one piece, of one dtype, shape and byte order (as Micro-Manager and
    tifffile's OME writer store them)."""
    lead = [(a, n) for a, n in zip(axes[:-2], dims) if a != "R"]
    if len(pages) != math.prod(n for _, n in lead) or any(p is None for p in pages):
        return None
    key = pages[0].keyframe
    plane = (np.dtype(key.dtype).newbyteorder(key.parent.byteorder), tuple(key.shape))
    if len(key.shape) != 2 or key.compression != 1:
        return None
    out = {}
    for page, index in zip(pages, np.ndindex(*(n for _, n in lead))):
        if (not page.is_contiguous or page.keyframe.dtype != key.dtype or tuple(page.keyframe.shape) != key.shape
                or page.parent.byteorder != key.parent.byteorder
                or len(page.dataoffsets) != 1 or page.dataoffsets[0] <= 0
                or page.databytecounts[0] != plane[0].itemsize * math.prod(key.shape)):
            return None
        at = dict(zip((a for a, _ in lead), index))
        if at.get("Z", 0) == z:
            out.setdefault((at.get("T", 0), at.get("C", 0)), (page.parent.filehandle.path, int(page.dataoffsets[0])))
    return out, plane


def _page_index(s: _Stack, t, c):
    """Index into ``series.pages`` of plane (t, c) (at ``s.z``) of position ``s`` in stored axis order."""
    dims, index = [], []
    for ax, n in zip(s.axes[:-2], s.dims):
        dims.append(n)
        index.append(t if ax == "T" else c if ax == "C" else s.position if ax == "R" else s.z if ax == "Z" else 0)
    return int(np.ravel_multi_index(index, dims)) if dims else 0


class _Damage(logging.Handler):
    """tifffile's complaints in this thread: of a file cut short it only logs them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record):
        message = record.getMessage()
        if record.thread == self.thread and ("invalid" in message or "corrupt" in message):
            self.messages.append(message)


@contextmanager
def _intact(path):
    """Raise `PlateError` when tifffile, reading ``path`` within, logs it damaged.

    A stack cut short (an interrupted copy) opens without an error: tifffile logs
    "invalid page offset" and shows the pages before the cut, and the OME-XML
    naming the channels may be lost with them, so frames would vanish and channels
    fall back to the default order. (A user who silences tifffile's logger below
    WARNING silences this check too.)
    """
    logger, handler = logging.getLogger("tifffile"), _Damage()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if any("MMStack file name is invalid" in m for m in handler.messages):
        # Not damage: tifffile gathers a Micro-Manager dataset's positions from the files named
        # PREFIX_MMStack*.tif only, and reads a renamed one as if it held its own positions alone.
        raise PlateError(f"cannot read {str(path)!r}: a file of a Micro-Manager dataset renamed (its name must "
                         "start with the dataset's prefix, the Summary's 'Prefix', and hold '_MMStack'), so "
                         "its positions cannot be gathered from the dataset's files: give them back the names "
                         "Micro-Manager wrote")
    if handler.messages:
        raise PlateError(f"cannot read {str(path)!r}: a damaged or truncated TIFF (tifffile: {handler.messages[0]})")


class _Position(NamedTuple):
    """One position of a stack file: its `_Stack`, or the `PlateError` that keeps it from being read."""

    where: str            # "" for a file's only position, else "series=1" or "r=1"
    label: str | None     # its OME Image name or Micro-Manager position label
    index: int            # its site where no label names one
    stack: _Stack | None
    error: PlateError | None
    first: tuple | None   # (file, offset) of its first plane: one position met in two files
    files: tuple          # the files its planes lie in


def _open_stack(path, user, defaults, z=None) -> list:
    """The positions of one stack file (`_Position`); `PlateError` when the file cannot be read.

    ``user``: the channel map (normalised name or index -> role), which wins over
    ``defaults`` (normalised name -> role); ``z``: the focal plane (see `_check_stack`).
    """
    try:
        with _intact(path), tifffile.TiffFile(path) as tif:
            len(tif.pages)  # every page read, so a cut in the chain of pages shows
            everything = tif.series
            first = everything[0]
            if first.kind == "mmstack" and "R" in first.axes:
                return _mm_positions(path, tif, first, user, defaults, z)
            # Other positions: series of the first full-resolution series' plane size (some
            # exporters embed a thumbnail page as a series of its own, before or after).
            full = [i for i, s in enumerate(everything) if not getattr(s.pages[0], "is_reduced", False)] or [0]
            size = _plane_size(everything[full[0]])
            chosen = [i for i in full if _plane_size(everything[i]) == size]
            # A page at most half as tall and wide is a preview; a full-size other is said.
            other = [i for i in full if i not in chosen
                     and not all(2 * a <= b for a, b in zip(_plane_size(everything[i]), size))]
            if other:
                warnings.warn(f"{str(path)!r}: image series {', '.join(map(str, other))} left out: their planes "
                              f"({', '.join(str(_plane_size(everything[i])) for i in other)}) are not of "
                              f"series {full[0]}'s size {size}: save a position of another size to a file of "
                              "its own", UserWarning, stacklevel=4)
            images = _ome_images(tif)
            out = []
            for i in chosen:
                series = everything[i]
                where, label, text = "", None, repr(str(path))
                if series.kind == "mmstack":
                    label = _lone_mm_label(tif, series)
                if len(chosen) > 1:
                    where, label = f"series={i}", series.name or None   # the OME Image's Name
                    text += f" series {i}" + (f" ({label!r})" if label else "")
                image = _ome_image(tif, images, i)
                if tif.is_ome and images and image is None:
                    error = PlateError(f"{text}: which OME Image it is cannot be told (its series and the "
                                       f"OME-XML's {len(images)} Images do not match up), so neither are "
                                       "its channels")
                    out.append(_Position(where, label, i, None, error, None, ()))
                    continue
                names, size = _stack_channel_names(tif, image), _pixel_size(tif, image)
                out.append(_position(path, text, where, label, i, series.axes, series.shape,
                                     list(series.pages), names, size, user, defaults, z=z, series=i))
            return out
    except PlateError:
        raise
    except Exception as e:
        raise PlateError(f"cannot read {str(path)!r}: {_why(e)}{_damaged_sibling(path)}") from None


def _plane_size(series) -> tuple:
    """(rows, columns) of a series' planes (``shape[-2:]`` would be (columns, samples) of RGB)."""
    page = series.keyframe
    return int(page.imagelength), int(page.imagewidth)


def _mm_prefix(path, summary) -> str:
    """A Micro-Manager dataset's prefix, as tifffile globs its files (``PREFIX_MMStack*.tif``):
    the Summary's ``Prefix``, else the file name up to ``_MMStack``."""
    return summary.get("Prefix") or Path(path).name.split("_MMStack")[0]


def _damaged_sibling(path) -> str:
    """Where ``path`` is a Micro-Manager file: "; ..." naming another file of its dataset that is
    damaged or no Micro-Manager file (tifffile reads every one of them to gather the positions,
    and fails on that one whichever is opened); else ""."""
    path = Path(path)
    if "_MMStack" not in path.name:
        return ""
    try:
        with tifffile.TiffFile(path) as tif:
            prefix = _mm_prefix(path, ((tif.micromanager_metadata or {}).get("Summary") or {}))
    except Exception:
        prefix = _mm_prefix(path, {})
    # The files tifffile globs (TiffFile._series_mmstack): the Summary's prefix, unescaped.
    for other in sorted(Path(p) for p in glob.glob(os.path.join(path.parent, f"{prefix}_MMStack*.tif"))):
        if other.name == path.name:
            continue
        try:   # what tifffile reads of each: its header and its index map
            with _intact(other), tifffile.TiffFile(other) as tif:
                if not tif.is_micromanager:
                    return (f"; {other.name!r}, named as a file of its Micro-Manager dataset (tifffile gathers "
                            "the positions of every PREFIX_MMStack*.tif), is no Micro-Manager file: move it aside")
                tifffile.read_micromanager_metadata(tif.filehandle, {"IndexMap"})["IndexMap"]
        except Exception as e:
            why = e if isinstance(e, PlateError) else _why(e)
            return (f"; its Micro-Manager dataset's file {other.name!r}, whose positions tifffile gathers with "
                    f"this file's, is damaged ({why}): move it aside to read the other positions")
    return ""


def _mm_positions(path, tif, series, user, defaults, z=None) -> list:
    """The positions of a Micro-Manager series, one per index along its axis R.

    tifffile gathers the positions from all of the dataset's files (``PREFIX_MMStack*.tif``
    beside ``path``), whichever of them is opened; with the others missing it keeps those
    of ``path``, renumbered from 0.
    """
    meta = tif.micromanager_metadata or {}
    summary = meta.get("Summary") or {}
    axes, shape = series.axes, series.shape
    prefix = _mm_prefix(path, summary)
    if series.is_multifile and glob.escape(prefix) != prefix:
        raise PlateError(f"cannot read {str(path)!r}: its Micro-Manager dataset's prefix {prefix!r} holds a glob "
                         "character ([, ], *, ?), and tifffile, gathering the dataset's files as "
                         "PREFIX_MMStack*.tif, misses them: rename the dataset (its files and the Summary's "
                         "Prefix) without it")
    if axes[-2:] != "YX" or "S" in axes:
        raise PlateError(f"{str(path)!r} has axes {axes} {shape}; expected grayscale ...YX planes")
    n_r = shape[axes.index("R")]
    index_map = meta.get("IndexMap")
    # the index along R of the dataset's first position in this series (see above)
    start = 0 if series.is_multifile or index_map is None or not len(index_map) else int(index_map[:, 3].min())
    labels = _mm_labels(summary, start + n_r)
    names = summary.get("ChNames")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        names = _stack_channel_names(tif)
    grid = np.arange(len(series.pages)).reshape(shape[:-2])
    positions = [[series.pages[i] for i in grid.take(r, axis=axes.index("R")).ravel()] for r in range(n_r)]
    # Each plane's own metadata (TIFF tag 51123) names its position ("PositionName") and
    # pixel size ("PixelSizeUm"): read from a position's first plane where the Summary gives
    # no position list, or (Micro-Manager 2.0) no pixel size.
    planes = [_mm_plane_metadata(next((p for p in pages if p is not None), None))
              if labels is None or r == 0 else {} for r, pages in enumerate(positions)]
    size = summary.get("PixelSize_um")   # Micro-Manager 1.4 only
    if not (isinstance(size, (int, float)) and size > 0):
        size = planes[0].get("PixelSizeUm") if planes else None
    size = float(size) if isinstance(size, (int, float)) and size > 0 else _pixel_size(tif)
    out = []
    for r, pages in enumerate(positions):
        label = labels[start + r] if labels else planes[r].get("PositionName")
        label = label if isinstance(label, str) and label else None
        text = f"{str(path)!r} position {start + r}" + (f" ({label!r})" if label else "")
        out.append(_position(path, text, f"r={r}", label, start + r, axes, shape, pages, tuple(names), size,
                             user, defaults, allowed="TCR", z=z, position=r))
    return out


def _lone_mm_label(tif, series) -> str | None:
    """The position label of a Micro-Manager file of one position read alone (tifffile then
    drops the axis R): the Summary's entry for the position its index map names, else its
    first plane's ``PositionName``."""
    meta = tif.micromanager_metadata or {}
    index_map = meta.get("IndexMap")
    where = set(index_map[:, 3].tolist()) if index_map is not None and len(index_map) else set()
    labels = _mm_labels(meta.get("Summary") or {}, max(where, default=0) + 1)
    label = labels[where.pop()] if labels and len(where) == 1 else None
    if label is None:
        label = _mm_plane_metadata(next((p for p in series.pages if p is not None), None)).get("PositionName")
    return label if isinstance(label, str) and label else None


def _mm_labels(summary, n) -> list | None:
    """The position labels (``Pos0``, ``B2-Site_3``) of a Micro-Manager Summary, when it lists ``n``.

    Micro-Manager 2.0 lists the acquisition's positions under ``StagePositions``, 1.4 under
    ``InitialPositionList`` (null without a position list): dicts with a ``Label`` each, in
    the order of the planes' ``PositionIndex``. ``Positions`` is their number (an integer),
    in both.
    """
    count = summary.get("Positions")
    if isinstance(count, int) and not isinstance(count, bool):
        n = max(n, count)
    for k in ("StagePositions", "InitialPositionList"):
        found = summary.get(k)
        if isinstance(found, list) and len(found) == n:
            labels = [p.get("Label") if isinstance(p, dict) else None for p in found]
            if all(isinstance(x, str) and x for x in labels):
                return labels
    return None


def _mm_plane_metadata(page) -> dict:
    """The JSON of a Micro-Manager plane's tag 51123 (``PositionName``, ``PixelSizeUm``, ...); {}
    where it cannot be read.

    Read from the plane's IFD in its file: tifffile keeps the tags of a file's first plane only
    (the others are frames placed by the index map, some in files it has closed again).
    """
    if page is None or not page.offset or getattr(page.parent, "is_bigtiff", False):
        return {}
    try:
        order = page.parent.byteorder
        with open(page.parent.filehandle.path, "rb") as f:
            f.seek(page.offset)
            (count,) = struct.unpack(order + "H", f.read(2))
            entries = f.read(12 * count)
            for i in range(count):
                tag, kind, n, value = struct.unpack_from(order + "HHII", entries, 12 * i)
                if tag == 51123 and kind in (1, 2, 7) and 0 < n < 1 << 24:
                    if n <= 4:
                        data = entries[12 * i + 8:12 * i + 8 + n]
                    else:
                        f.seek(value)
                        data = f.read(n)
                    found = json.loads(data.rstrip(b"\0").decode("utf-8"))
                    return found if isinstance(found, dict) else {}
    except (OSError, ValueError, struct.error):
        pass
    return {}


def _position(path, text, where, label, index, axes, shape, pages, names, size, user, defaults,
              allowed="TC", z=None, **at) -> _Position:
    """One position checked as `_open_stack` checks a stack; ``pages``: its planes, ``at``:
    `_Stack`'s ``series`` or ``position``."""
    present = [p for p in pages if p is not None]
    first = (present[0].parent.filehandle.path, present[0].offset) if present else None
    files = tuple(sorted({Path(p.parent.filehandle.path) for p in present}))
    try:
        # A stack whose metadata promise more planes than its chain of pages holds
        # (tifffile lists the rest as None): found now, not frame by frame mid-run.
        if len(present) < len(pages):
            gone = ", or a file of the dataset missing" if "position" in at else ""
            where_ = (f" (its planes found in {', '.join(repr(f.name) for f in files)})"
                      if files and files != (Path(path),) else "")
            raise PlateError(f"cannot read {text}: it holds {len(present)} of the {len(pages)} planes "
                             f"its metadata give (axes {axes} {shape}){where_}: a file cut short or "
                             f"written incompletely{gone}")
        stack = _check_stack(path, text, axes, shape, names, size, user, defaults, allowed, z)
    except PlateError as e:
        return _Position(where, label, index, None, e, first, files)
    stack = replace(stack, where=where, files=files, **at)
    if where:
        # One of several positions: its planes are read where the file puts them. Reopening
        # the file for each frame would parse its OME-XML of every position, or every file's
        # index map of a Micro-Manager dataset, each time (bench_read.py).
        found = _addresses(axes, shape[:-2], pages, stack.z)
        if found:
            stack = replace(stack, planes=found[0], plane=found[1])
    return _Position(where, label, index, stack, None, first, files)


def _source(path, where):
    """``path``, or ``path[series=1]`` for a position among several in it."""
    return f"{path}[{where}]" if where else str(path)


def _named_site(name):
    """(well, site) a position's name gives (``B2-Site_3``, ``B02_s2``, ``B2``), else None."""
    m = name and (_MM_SITE.search(name) or _SERIES_NAME.fullmatch(name))
    return (m.group("well").upper(), int(m.group("site") or 0)) if m else None


def _check_stack(path, text, axes, shape, names, size, user, defaults, allowed="TC", z=None) -> _Stack:
    """A series' axes checked and its channels given roles; ``text`` names it in errors, ``allowed``
    the axes other than Y, X that may exceed 1. ``z``: the focal plane read of a stack of several (an
    index along Z from 0; a stack of one plane reads it whatever ``z``); None refuses Z > 1."""
    if axes[-2:] != "YX" or "S" in axes:
        raise PlateError(f"{text} has axes {axes} {shape}; expected grayscale ...YX planes")
    dims = tuple(shape[:-2])
    # No T or C named (plain multi-page TIFF, ImageJ stack without hyperstack
    # metadata, tifffile's unnamed "Q" axes): pages in ImageJ order, channel
    # fastest, three channels.
    if not set(axes[:-2]) & set("TCR"):
        big = [n for n in dims if n > 1]
        if len(big) == 1 and big[0] % 3 == 0:
            axes, dims = "TCYX", (big[0] // 3, 3)
        elif len(big) == 2 and big[1] == 3:
            axes, dims = "TCYX", tuple(big)
        shape = dims + tuple(shape[-2:])
    lead = dict(zip(axes[:-2], dims))
    n_z = lead.get("Z", 1)
    if z is not None and n_z > 1:
        allowed += "Z"
        if z >= n_z:
            raise PlateError(f"{text} has {n_z} focal planes (axis Z of {axes} {shape}), numbered from 0; z={z} "
                             "is not among them")
    bad = {a: n for a, n in lead.items() if a not in allowed and n > 1}
    if bad:
        what = (" (R: positions, read from Micro-Manager datasets only)" if "R" in bad else
                " (Z: choose the focal plane, z= or --z, numbered from 0)" if "Z" in bad else "")
        raise PlateError(f"{text} has axes {axes} {shape}: only {', '.join(allowed[:-1])} and {allowed[-1]} "
                         f"may exceed 1 (got {', '.join(f'{a}={n}' for a, n in bad.items())}){what}")
    n_t, n_c = lead.get("T", 1), lead.get("C", 1)
    named = len(names) == n_c and any(name != str(i) for i, name in enumerate(names))
    if len(names) != n_c:
        names = tuple(str(i) for i in range(n_c))
    roles = {}
    for i, name in enumerate(names):
        # The user's map first, by name or index: "0=draq7" holds even where channel 0 is named "BF".
        role = user.get(_norm(name)) or user.get(str(i)) or _default_role(name, defaults)
        if role in CHANNEL_ROLES:
            if role in roles:
                raise PlateError(f"{text}: channels {names[roles[role]]!r} and {name!r} both map to {role}")
            roles[role] = i
    # The documented default order is for unnamed channels only: named ones that no map
    # knows would be assigned by position without a word.
    if not roles and n_c == 3 and not user and not named:
        roles = dict(zip(CHANNEL_ROLES, range(3)))
    missing = [r for r in CHANNEL_ROLES if r not in roles]
    if missing and n_t * n_c == 1:
        raise PlateError(f"{text} is a single 2-D image, not a T/C stack; single-channel files "
                         "need a folder layout (gen5, imagexpress) or a pattern with a (?P<channel>...) group")
    if missing:
        raise PlateError(f"{text}: no {'/'.join(missing)} channel among {list(names)} "
                         f"(axes {axes} {shape}); pass a channel map, e.g. NAME={missing[0]}")
    return _Stack(Path(path), (n_t, n_c, shape[-2], shape[-1]), axes, tuple(names), roles, size, dims,
                  z=z if n_z > 1 else 0, n_z=n_z)


def _ome_image(tif, images, i):
    """The OME Image of series ``i``; None where that cannot be told.

    tifffile makes one series of each Image with planes in TIFF (a ``TiffData``), in order;
    failing that, the one Image of the series' name.
    """
    if not images:
        return None
    if tif.series[i].kind != "ome":   # OME-XML tifffile could not follow: as it reads the first series
        return images[0] if i == 0 else None
    stored = [im for im in images if isinstance(im.get("Pixels"), dict) and "TiffData" in im["Pixels"]]
    if len(stored) == len(tif.series):
        return stored[i]
    named = [im for im in images if str(im.get("Name")) == tif.series[i].name]
    if len(named) == 1:
        return named[0]
    return images[0] if i == 0 else None


def _stack_channel_names(tif, image=None) -> tuple:
    """Channel names from the OME ``image`` (by default the first), else from ImageJ's labels,
    else from Micro-Manager's summary."""
    if tif.is_ome:
        try:
            image = image if image is not None else _ome_images(tif)[0]
            chans = image["Pixels"].get("Channel", [])
            chans = chans if isinstance(chans, list) else [chans]
            names = tuple(str(c.get("Name", i)) for i, c in enumerate(chans))
            if names:
                return names
        except Exception:
            pass
    ij = tif.imagej_metadata
    if ij:
        labels = ij.get("Labels")
        n_c = int(ij.get("channels", 1))
        if labels and n_c > 1 and len(labels) >= n_c:
            return tuple(str(x) for x in labels[:n_c])
    if tif.is_micromanager:
        # A Micro-Manager file without its dataset's OME-XML (which only the first file holds)
        try:
            names = (tif.micromanager_metadata or {}).get("Summary", {}).get("ChNames")
        except Exception:
            names = None
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return tuple(names)
    return ()


def _stack_plate(root, pattern, channel_map, skip=(), z=None) -> StackPlate:
    root = Path(root)
    paths = [root] if root.is_file() else _tiffs(root, skip)
    if not paths:
        raise PlateError(f"no TIFF files in {str(root)!r}")
    rx = re.compile(pattern) if pattern else _STACK_NAME
    if pattern and "well" not in rx.groupindex:
        raise ValueError(f"pattern {pattern!r} needs a named group (?P<well>...) (and optionally site, and "
                         "channel for single-channel files)")
    user = {_norm(k): v for k, v in parse_channel_map(channel_map).items()}
    defaults = {_norm(k): v for k, v in DEFAULT_CHANNEL_MAP.items()}
    stacks, keys, problems, broken, first_error, ignored = {}, [], {}, {}, None, []
    found = {}      # (well, site) -> (where it was read from, a position among several?)
    seen = set()    # the first plane of each position read (file, offset)
    covered = set()   # the files those positions' planes lie in
    for path in paths:
        name = path.name if root.is_file() else path.relative_to(root).as_posix()
        if not pattern and not root.is_file() and _THUMBNAIL.search(path.name):
            ignored.append(path)
            continue
        # Another file of a Micro-Manager (or multi-file OME) dataset already read: opened, it
        # gives that dataset's positions again.
        if path.resolve() in covered:
            continue
        m = rx.search(name) if pattern else (_MM_SITE.search(path.name) or rx.search(path.name))
        if pattern and not (m and m.group("well")):   # the user's names: a file they do not fit is no stack
            ignored.append(path)
            continue
        in_name = bool(m and m.groupdict().get("well"))
        if in_name:
            well, site = m.group("well").upper(), int(m.groupdict().get("site") or 0)
        else:
            well, site = path.name.split(".")[0], 0
        try:
            positions = _open_stack(path, user, defaults, z)
        except PlateError as e:
            positions = [_Position("", None, 0, None, e, None, ())]
        for pos in positions:
            if pos.first is not None and pos.first in seen:
                continue
            seen.add(pos.first)
            covered.update(p.resolve() for p in pos.files)
            own = well
            if pos.where.startswith("r=") and not pattern:
                # A Micro-Manager dataset's well is in its name, the files' up to "_MMStack" (after
                # it, a file's own position: exp_MMStack_B2-Site_0.ome.tif), else it is that name.
                prefix = path.name.split("_MMStack")[0].split(".")[0]
                named = rx.search(prefix)
                own = named.group("well").upper() if named else prefix
            if pos.where:
                key = _named_site(pos.label) or (own, pos.index)
            else:
                # One position: its name's well, else (a Micro-Manager file read alone) its label's
                key = (well, site) if in_name else (_named_site(pos.label) or (well, site))
            source = _source(path, pos.where)
            if key in found:
                other, among = found[key]
                hint = "" if pos.where or among else (
                    " (one file per channel needs a folder layout, gen5 or imagexpress, or a "
                    "pattern with a (?P<channel>...) group)")
                raise PlateError(f"two stacks for well {key[0]} site {key[1]}: {other!r} and {source!r}{hint}")
            found[key] = (source, bool(pos.where))
            if pos.error is not None:
                # one bad stack in a folder is that position's problem (listed, skippable);
                # a folder where no stack reads at all is an error
                first_error = first_error or pos.error
                broken[key] = path
                k = FrameKey(*key, 0)
                problems[k] = f"{_key_text(k)}: {pos.error}"
                keys.append(k)
                continue
            stacks[key] = pos.stack
            keys += [FrameKey(*key, t) for t in range(pos.stack.shape[0])]
    if not stacks and first_error is None:
        what = f"pattern {pattern!r} matched no file" if pattern else "no stack but previews (names with 'thumb')"
        raise PlateError(f"{what} under {str(root)!r} (e.g. {ignored[0].name!r})")
    if not stacks:
        raise first_error
    unused = [k for k in user if not any(k == str(i) or k in {_norm(n) for n in st.channel_names}
                                         for st in stacks.values() for i in range(st.shape[1]))]
    if unused:   # a typo, or an index past the stacks' channels
        names = sorted({n for st in stacks.values() for n in st.channel_names})
        warnings.warn(f"channel map: {', '.join(map(repr, unused))} name no channel of the stacks in "
                      f"{str(root)!r} (their channels: {', '.join(names)})", UserWarning, stacklevel=3)
    n_t = max(s.shape[0] for s in stacks.values())
    for (well, site), st in stacks.items():
        for t in range(st.shape[0], n_t):
            key = FrameKey(well, site, t)
            problems[key] = (f"{_key_text(key)}: {_source(st.path, st.where)!r} holds {st.shape[0]} "
                             f"time point(s), other stacks {n_t}")
            keys.append(key)
    return StackPlate(root=root, layout="stack", stacks=stacks, _keys=sorted(set(keys)), problems=problems,
                      broken=broken, ignored=ignored)
