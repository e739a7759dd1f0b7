"""A tiny training set in the export format, made here so readout/qc tests need no plate reader.

``manifest.csv`` with the export's columns; ``image`` is a (3, Y, X) uint16 TIFF
(brightfield, hoechst, draq7), ``classes`` a uint8 mask, ``cells`` int32 labels,
``weights`` float32, paths relative to the folder.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

import numpy as np
import tifffile

from livedead_gpu import SegmentParams, segment_frame, synthetic

MANIFEST_COLUMNS = [
    "well", "site", "time", "image", "classes", "cells", "weights", "params_hash", "n_live", "n_dead",
    "dead_fraction", "frac_background", "frac_cell", "frac_outline", "frac_hoechst", "frac_draq7",
    "thr_gradient", "thr_hoechst", "thr_draq7", "split",
]
WELLS = ("A1", "A2", "B1", "B3")


def make_plate(size=112, times=3, sites=2, seed=3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a crowded frame drops a cell: fine
        return synthetic.make_plate(wells=WELLS, sites=sites, n_times=times, shape=(size, size),
                                    n_cells=6, seed=seed)


def write_training_set(root: Path, plate) -> dict:
    """Segment ``plate`` and write it as a training set under ``root``; returns the plate."""
    params = SegmentParams()
    phash = hashlib.sha1(params.to_toml().encode()).hexdigest()[:12]
    rows = []
    for (well, site, t), f in sorted(plate.items()):
        r = segment_frame(f.brightfield, f.hoechst, f.draq7, params)
        stem = f"{well}_s{site}_t{t:03d}"
        for sub in ("images", "masks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / f"{stem}.tif", np.stack([f.brightfield, f.hoechst, f.draq7]),
                         photometric="minisblack")
        tifffile.imwrite(root / "masks" / f"{stem}_classes.tif", r.classes)
        tifffile.imwrite(root / "masks" / f"{stem}_cells.tif", r.cells)
        tifffile.imwrite(root / "masks" / f"{stem}_weights.tif", np.ones(r.classes.shape, np.float32))
        frac = np.bincount(r.classes.ravel(), minlength=5) / r.classes.size
        n = r.n_live + r.n_dead
        rows.append({
            "well": well, "site": site, "time": t, "image": f"images/{stem}.tif",
            "classes": f"masks/{stem}_classes.tif", "cells": f"masks/{stem}_cells.tif",
            "weights": f"masks/{stem}_weights.tif", "params_hash": phash,
            "n_live": r.n_live, "n_dead": r.n_dead, "dead_fraction": round(r.n_dead / n, 4) if n else "",
            **{f"frac_{c}": round(float(v), 6) for c, v in
               zip(("background", "cell", "outline", "hoechst", "draq7"), frac)},
            "thr_gradient": r.thresholds["gradient"], "thr_hoechst": r.thresholds["hoechst"],
            "thr_draq7": r.thresholds["draq7"], "split": "train",
        })
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (root / "params.toml").write_text(params.to_toml())
    return plate
