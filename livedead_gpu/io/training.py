"""The on-disk training set: per-frame TIFFs, per-frame records, the manifest, a reader.

Layout of a training set folder ``OUT``::

    OUT/params.toml              parameters of the run (SegmentParams.to_toml)
    OUT/manifest.csv             one row per frame written (MANIFEST_COLUMNS)
    OUT/errors.csv               frames that failed and were skipped (only when some did)
    OUT/patches.csv              one row per patch (only with patch export)
    OUT/images/STEM.tif          (3, Y, X) uint16 input: brightfield, hoechst, draq7 (ImageJ)
    OUT/classes/STEM.tif         (Y, X) uint8 class mask 0..4 (ImageJ)
    OUT/cells/STEM.ome.tif       (Y, X) int32 cell instance labels (OME; ImageJ has no int32)
    OUT/weights/STEM.tif         (Y, X) float32 U-Net weight map (ImageJ; optional)
    OUT/patches/STEM_image.tif   (K, 3, P, P) uint16, STEM_classes.tif (K, P, P) uint8,
                                 STEM_weights.tif (K, P, P) float32 (optional)
    OUT/records/STEM.json        what was written for a frame, written last (resume marker)

``STEM`` is ``{well}_s{site:02d}_t{time:04d}``. Every file is written to a temporary
name and renamed (`livedead_gpu.io.atomic`). Paths in the manifest are relative to
``OUT``.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from .atomic import atomic_write_text, write_tiff

__all__ = [
    "CLASS_LABELS",
    "INPUT_CHANNELS",
    "MANIFEST_COLUMNS",
    "PATCH_COLUMNS",
    "TrainingSet",
    "frame_stem",
    "open_training_set",
    "optional_files",
    "read_manifest",
    "read_record",
    "write_csv",
    "write_record",
    "write_training_frame",
    "write_patches",
]

INPUT_CHANNELS = ("brightfield", "hoechst", "draq7")
CLASS_LABELS = ("background", "cell", "outline", "hoechst", "draq7")
SPLITS = ("train", "val", "test")

MANIFEST_COLUMNS = [
    "well", "site", "time", "image", "classes", "cells", "weights", "params_hash",
    "n_live", "n_dead", "dead_fraction",
    "frac_background", "frac_cell", "frac_outline", "frac_hoechst", "frac_draq7",
    "thr_gradient", "thr_hoechst", "thr_draq7", "bleed", "hoechst_smoothing", "split",
    "n_patches", "height", "width", "pixel_size", "channels", "source",
]
PATCH_COLUMNS = ["well", "site", "time", "split", "index", "y", "x", "size", "frac_foreground",
                 "image", "classes", "weights"]
ERROR_COLUMNS = ["well", "site", "time", "error"]
RECORD_VERSION = 1


def frame_stem(well, site, time) -> str:
    """File stem of a frame, e.g. ``B2_s01_t0003``."""
    return f"{well}_s{int(site):02d}_t{int(time):04d}"


def _resolution(pixel_size):
    if pixel_size:
        return {"resolution": (1.0 / pixel_size, 1.0 / pixel_size)}, {"unit": "um"}
    return {}, {}


# zlib level 1: camera noise does not compress, and the default level takes ~5x the time
# for ~2% smaller files (a 2048² input stack: ~0.5 s instead of ~3 s)
FAST = {"compressionargs": {"level": 1}}


def _imagej(path, array, axes, labels, pixel_size, ranges=None, info=None, **kw):
    res, unit = _resolution(pixel_size)
    meta = {"axes": axes, "Labels": list(labels), **unit}
    if ranges is not None:
        meta["Ranges"] = ranges
    if info:
        meta["Info"] = info
    return write_tiff(path, array, imagej=True, metadata=meta, **res, **kw)


def write_training_frame(out, stem, image, classes, cells, weights=None, pixel_size=None,
                         uid_seed="") -> dict:
    """Write one frame's TIFFs atomically; return their paths relative to ``out``.

    Parameters
    ----------
    out : Path
    stem : str
    image : (3, M, N) uint16 ndarray
    classes : (M, N) uint8 ndarray
    cells : (M, N) int32 ndarray
    weights : (M, N) float32 ndarray, optional
    pixel_size : float, optional
        Micrometres per pixel, written as resolution (and OME PhysicalSize).
    uid_seed : str
        Makes the OME UUID of the labels file a function of the content's identity
        (stem + parameters), so reruns write byte-identical files.

    Returns
    -------
    dict
        ``image``, ``classes``, ``cells`` and ``weights`` (``""`` when not written).
    """
    out = Path(out)
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, M, N) uint16, got {image.shape} {image.dtype}")
    rel = {
        "image": f"images/{stem}.tif",
        "classes": f"classes/{stem}.tif",
        "cells": f"cells/{stem}.ome.tif",
        "weights": _weights_path(stem) if weights is not None else "",
    }
    _imagej(out / rel["image"], image, "CYX", INPUT_CHANNELS, pixel_size, **FAST)
    _imagej(out / rel["classes"], classes.astype(np.uint8, copy=False), "YX", ["classes"],
            pixel_size, ranges=(0.0, 4.0),
            info="classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(CLASS_LABELS)))
    ome = {"axes": "YX", "Channel": {"Name": ["cells"]},
           "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"livedead-gpu/{uid_seed}/{stem}"))}
    if pixel_size:
        ome.update(PhysicalSizeX=pixel_size, PhysicalSizeY=pixel_size,
                   PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    write_tiff(out / rel["cells"], cells.astype(np.int32, copy=False), ome=True, metadata=ome)
    if weights is not None:
        _imagej(out / rel["weights"], weights.astype(np.float32, copy=False), "YX", ["weights"],
                pixel_size, **FAST)
    return rel


def _weights_path(stem):
    return f"weights/{stem}.tif"


def _patch_paths(stem):
    return {k: f"patches/{stem}_{k}.tif" for k in ("image", "classes", "weights")}


def optional_files(stem) -> tuple:
    """The files a frame has or not by the export's options (weight map, patches), relative to the set."""
    return (_weights_path(stem), *_patch_paths(stem).values())


def write_patches(out, stem, image, classes, weights=None, pixel_size=None) -> dict:
    """Write a frame's patches, stacked: (K, 3, P, P), (K, P, P)[, (K, P, P)]."""
    out = Path(out)
    # Not ImageJ files (a Q axis of patches), so no ImageJ unit: pixels per centimetre,
    # in the TIFF's own unit tag (without one, readers take the resolution per inch).
    res = {"resolution": (1e4 / pixel_size, 1e4 / pixel_size), "resolutionunit": "CENTIMETER"} if pixel_size else {}
    rel = _patch_paths(stem)
    if weights is None:
        rel["weights"] = ""
    # minisblack: three channels are three pages, not one RGB-like planar page
    kw = {"photometric": "minisblack", **res}
    write_tiff(out / rel["image"], image, metadata={"axes": "QCYX"}, **kw, **FAST)
    write_tiff(out / rel["classes"], classes, metadata={"axes": "QYX"}, **kw)
    if weights is not None:
        write_tiff(out / rel["weights"], weights, metadata={"axes": "QYX"}, **kw, **FAST)
    return rel


# --------------------------------------------------------------------------- records


def write_record(out, stem, record: dict) -> Path:
    """The per-frame record, written atomically after the frame's files: its presence
    with matching parameters means the frame is done."""
    text = json.dumps({"version": RECORD_VERSION, **record}, sort_keys=True, indent=1)
    return atomic_write_text(Path(out) / "records" / f"{stem}.json", text + "\n")


def read_record(out, stem) -> dict | None:
    """The frame's record, or None when absent or unreadable (then the frame is redone)."""
    path = Path(out) / "records" / f"{stem}.json"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION:
        return None
    return rec


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def write_csv(path, columns, rows) -> Path:
    """Write ``rows`` (dicts) as CSV with ``columns``, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path) -> list[dict]:
    """Rows of a training set's ``manifest.csv`` (a folder or the CSV itself), as strings."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # an Excel-saved copy starts with a BOM
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise FileNotFoundError(f"no manifest at {str(path)!r}: not a training set") from None


# --------------------------------------------------------------------------- reader


class TrainingSet(Sequence):
    """Sequence of ``(image, mask)`` or ``(image, mask, weights)`` read on demand.

    ``image`` is (3, M, N) uint16 (brightfield, hoechst, draq7), ``mask`` (M, N)
    uint8 with classes 0..4, ``weights`` (M, N) float32. With ``patches=True`` the
    items are patches (3, P, P) ... instead of frames. ``rows`` holds the manifest
    (or ``patches.csv``) row of each item.
    """

    def __init__(self, root, split=None, weights=None, patches=False):
        root = Path(root)
        self.root = root.parent if root.name == "manifest.csv" and root.is_file() else root
        self.patches = bool(patches)
        if patches and not (self.root / "patches.csv").is_file() and (self.root / "manifest.csv").is_file():
            raise ValueError(f"{str(self.root)!r} has no patches (no patches.csv): export it with patches, "
                             "or open its frames with patches=False")
        table = self.root / ("patches.csv" if patches else "manifest.csv")
        rows = read_manifest(table)
        need = ["image", "classes"] + ["split"] * (split is not None) + ["index"] * self.patches
        missing = [c for c in need if rows and c not in rows[0]]
        if missing:
            raise ValueError(f"{str(table)!r} has no column {', '.join(missing)}; its columns: {', '.join(rows[0])}")
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            if not wanted <= set(SPLITS):
                raise ValueError(f"split must be {', '.join(SPLITS[:-1])} or {SPLITS[-1]} (or several), "
                                 f"got {split if isinstance(split, str) else sorted(wanted)!r}")
            rows = [r for r in rows if r["split"] in wanted]
        has_weights = bool(rows) and all(r.get("weights") for r in rows)
        if weights and rows and not has_weights:  # (an empty split lacks no weight map)
            raise ValueError(f"{str(self.root)!r}: weights requested but not every item has a "
                             "weight map (export with weights=True)")
        self.weights = has_weights if weights is None else bool(weights)
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.rows[i]
        if self.patches:
            k = int(row["index"])
            image = tifffile.imread(self.root / row["image"], key=range(3 * k, 3 * k + 3))
            mask = tifffile.imread(self.root / row["classes"], key=k)
            if self.weights:
                return image, mask, tifffile.imread(self.root / row["weights"], key=k)
            return image, mask
        image = tifffile.imread(self.root / row["image"])
        mask = tifffile.imread(self.root / row["classes"])
        if self.weights:
            return image, mask, tifffile.imread(self.root / row["weights"])
        return image, mask

    def cells(self, i) -> np.ndarray:
        """(M, N) int32 cell instance labels of frame ``i``."""
        if self.patches:
            raise ValueError("cell labels are stored per frame, not per patch")
        return tifffile.imread(self.root / self.rows[i]["cells"])


def open_training_set(path, split=None, weights=None, patches=False) -> TrainingSet:
    """Open a training set written by `livedead_gpu.export.export_plate`.

    Parameters
    ----------
    path : str or Path
        The export's output folder.
    split : {"train", "val", "test"} or iterable of them, optional
        Only items of these splits.
    weights : bool, optional
        Yield weight maps as a third element; by default when the set has them.
    patches : bool
        Items are the exported patches instead of whole frames.

    Returns
    -------
    TrainingSet
        ``len(ts)``, ``ts[i] -> (image, mask[, weights])``, iterable.
    """
    return TrainingSet(path, split=split, weights=weights, patches=patches)
