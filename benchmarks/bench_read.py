"""Reading one frame of a multi-position file: planes at their recorded addresses vs through tifffile.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_read.py                   # 96 positions x 10 times, 256²
    PYTHONPATH=. .venv/bin/python benchmarks/bench_read.py --positions 12 --times 5 --size 128

Writes the same positions (three channels, uint16) twice into a temporary folder:
as Micro-Manager 2.0 saves a multi-position acquisition (one
``exp_MMStack_<label>.ome.tif`` per position, by the tests' ``write_mmstack``), and
as one OME-TIFF of one image series per position. Opens each with `open_plate`
(timed once), then reads ``--frames`` frames spread over it, alternating the two
ways of reading a frame: `StackPlate.read` as it is (each plane read at the file
and byte offset tifffile gave when the plate was opened) and with those addresses
removed (each frame through ``tifffile.TiffFile(...).asarray`` of the position's
series, which parses every file's index map of the Micro-Manager dataset, or the
OME-XML of every position, each time). Prints the medians per frame and their
ratio; asserts that both read the same pixels, nothing about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from livedead_gpu.io import open_plate  # noqa: E402
from test_io_plate import mm_summary, write_mmstack  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=96)
    ap.add_argument("--times", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=60, help="frames read each way")
    args = ap.parse_args(argv)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    labels = [f"{'ABCDEFGH'[k // 12 % 8]}{k % 12 + 1}-Site_{k // 96}" for k in range(args.positions)]
    with tempfile.TemporaryDirectory() as tmp:
        mm, ome = Path(tmp) / "mm", Path(tmp) / "ome"
        mm.mkdir()
        ome.mkdir()
        summary = mm_summary(labels, args.times)
        with tifffile.TiffWriter(ome / "plate.ome.tif", ome=True) as tw:
            for pos, label in enumerate(labels):
                data = np.random.default_rng(pos).integers(0, 4096, (args.times, 3, args.size, args.size), np.uint16)
                write_mmstack(mm / f"exp_MMStack_{label}.ome.tif",
                              [(c, t, pos, data[t, c]) for t in range(args.times) for c in range(3)], summary)
                tw.write(data, metadata={"axes": "TCYX", "Name": label, "Channel": {"Name": ["BF", "DAPI", "Cy5"]}})
        print(f"{args.positions} positions x {args.times} time points x 3 channels, {args.size}² uint16")
        for name, where in (("Micro-Manager dataset, a file a position", mm),
                            ("OME-TIFF, an image series a position", ome / "plate.ome.tif")):
            measure(name, where, args.frames)


def measure(name, where, n_frames):
    start = time.perf_counter()
    plate = open_plate(where)
    opened = time.perf_counter() - start
    keys = plate.keys()
    picks = [keys[i] for i in np.linspace(0, len(keys) - 1, min(n_frames, len(keys))).astype(int)]
    direct = plate.stacks
    assert all(s.planes is not None for s in direct.values())
    through = {k: dataclasses.replace(s, planes=None) for k, s in direct.items()}
    times = {"addresses": [], "tifffile": []}
    for key in picks:
        frames = {}
        for way, stacks in (("addresses", direct), ("tifffile", through)):
            plate.stacks = stacks
            t0 = time.perf_counter()
            frames[way] = plate.read(key)
            times[way].append(time.perf_counter() - t0)
        a, b = frames["addresses"], frames["tifffile"]
        assert all(np.array_equal(getattr(a, r), getattr(b, r)) for r in ("brightfield", "hoechst", "draq7"))
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"{name}: open_plate {opened * 1000:.0f} ms ({len(keys)} frames); read a frame, median of {len(picks)}: "
          f"addresses {med['addresses']:.2f} ms, tifffile {med['tifffile']:.2f} ms, "
          f"ratio {med['tifffile'] / med['addresses']:.0f}x")


if __name__ == "__main__":
    main()
