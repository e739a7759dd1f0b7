"""Hashes of every output of `segment_frame` over fixed inputs: proof that a speed-up changed nothing.

Run from the repository root, once before a change and once after::

    PYTHONPATH=. .venv/bin/python benchmarks/output_hashes.py --save before.json
    PYTHONPATH=. .venv/bin/python benchmarks/output_hashes.py --check before.json

The cases: four synthetic frames (300 x 260 to 2048², seeded) and, when
``../shared/data`` is beside the clone, the eight ADCC live/dead fields; each with
the defaults, the ``article`` preset and ``configs/article-nuclei.toml``. A case's
hash covers the class mask, cell and nucleus labels, dead flags and thresholds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from livedead_gpu import synthetic  # noqa: E402
from livedead_gpu.params import SegmentParams  # noqa: E402
from livedead_gpu.pipeline import segment_frame  # noqa: E402

ADCC = HERE.parents[1] / "shared" / "data" / "celldetective_adcc_livedead" / "images"
SYNTHETIC = [((2048, 2048), 1280, 0), ((512, 512), 60, 3), ((300, 260), 40, 1), ((1024, 768), 200, 5)]


def inputs(quick=False):
    """``(name, (brightfield, hoechst, draq7))`` pairs; ``quick``: the two small synthetic frames only."""
    for shape, n_cells, seed in SYNTHETIC:
        if quick and shape[0] > 512:
            continue
        f = synthetic.make_frame(shape=shape, n_cells=n_cells, seed=seed)
        yield f"synthetic {shape[0]}x{shape[1]} seed {seed}", (f.brightfield, f.hoechst, f.draq7)
    for path in [] if quick else sorted(ADCC.glob("*.tif")):
        channels = json.loads(path.with_suffix(".json").read_text())["channels"]
        image = tifffile.imread(path)
        yield path.stem, tuple(image[channels.index(c)] for c in
                               ("brightfield_channel", "live_nuclei_channel", "dead_nuclei_channel"))


def digest(result) -> str:
    h = hashlib.sha1()
    for name in ("classes", "cells", "nuclei", "dead"):
        h.update(np.ascontiguousarray(getattr(result, name)).tobytes())
    thresholds = {k: None if v is None else round(float(v), 9) for k, v in result.thresholds.items()}
    h.update(json.dumps(thresholds, sort_keys=True).encode())
    return h.hexdigest()[:16]


def hashes(quick=False) -> dict:
    params = {"defaults": SegmentParams(), "article": SegmentParams.from_preset("article"),
              "article-nuclei": SegmentParams.from_toml(HERE / "configs" / "article-nuclei.toml")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small synthetic frames may not place every cell
        return {f"{name} / {key}": digest(segment_frame(*images, params=p))
                for name, images in inputs(quick) for key, p in params.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="JSON", help="write the hashes")
    group.add_argument("--check", metavar="JSON", help="compare with hashes written before; exit 1 on a difference")
    ap.add_argument("--quick", action="store_true", help="the two small synthetic frames only (a smoke run)")
    args = ap.parse_args(argv)
    if args.check and not Path(args.check).is_file():
        ap.error(f"--check: no hashes at {args.check} (write them first with --save)")
    got = hashes(args.quick)
    if args.save:
        Path(args.save).write_text(json.dumps(got, indent=1) + "\n")
        print(f"{len(got)} cases written to {args.save}")
        return 0
    saved = json.loads(Path(args.check).read_text())
    differ = [k for k in saved if got.get(k) != saved[k]]
    missing = sorted(set(saved) ^ set(got))
    print(f"{len(saved)} cases: {len(differ)} differ" + (f" ({', '.join(differ)})" if differ else "")
          + (f"; not in both runs: {', '.join(missing)}" if missing else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
