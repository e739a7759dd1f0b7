"""Reading one frame of a Micro-Manager multi-position dataset: planes at their recorded addresses vs tifffile.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_read.py                   # 96 positions x 10 times, 512²
    PYTHONPATH=. .venv/bin/python benchmarks/bench_read.py --positions 12 --times 5 --size 256

Writes a dataset as Micro-Manager 2.0 saves a multi-position acquisition (one
``exp_MMStack_<label>.ome.tif`` per position, three channels, uint16; written by
the tests' ``write_mmstack``) into a temporary folder, opens it with `open_plate`
(timed once), then reads ``--frames`` frames spread over it, alternating the two
ways of reading a frame: `StackPlate.read` as it is (each plane read at the
file and byte offset tifffile's index map gave when the plate was opened) and
with those addresses removed (each frame through ``tifffile.TiffFile(...).asarray``
of the dataset's series, which reads every file's index map each time). Prints
the medians per frame and their ratio; asserts that both read the same pixels,
nothing about time.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from livedead_gpu.io import open_plate  # noqa: E402
from test_io_plate import mm_summary, write_mmstack  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=96)
    ap.add_argument("--times", type=int, default=10)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=60, help="frames read each way")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        labels = [f"{'ABCDEFGH'[k // 12 % 8]}{k % 12 + 1}-Site_{k // 96}" for k in range(args.positions)]
        summary = mm_summary(labels, args.times)
        start = time.perf_counter()
        for pos, label in enumerate(labels):
            planes = [(c, t, pos, rng.integers(0, 4096, (args.size, args.size), np.uint16))
                      for t in range(args.times) for c in range(3)]
            write_mmstack(root / f"exp_MMStack_{label}.ome.tif", planes, summary)
        written = time.perf_counter() - start
        start = time.perf_counter()
        plate = open_plate(root)
        opened = time.perf_counter() - start
        keys = plate.keys()
        picks = [keys[i] for i in np.linspace(0, len(keys) - 1, min(args.frames, len(keys))).astype(int)]
        direct = plate.stacks
        through = {k: dataclasses.replace(s, planes=None) for k, s in direct.items()}
        times = {"addresses": [], "tifffile": []}
        for key in picks:
            frames = {}
            for name, stacks in (("addresses", direct), ("tifffile", through)):
                plate.stacks = stacks
                t0 = time.perf_counter()
                frames[name] = plate.read(key)
                times[name].append(time.perf_counter() - t0)
            a, b = frames["addresses"], frames["tifffile"]
            assert all(np.array_equal(getattr(a, r), getattr(b, r)) for r in ("brightfield", "hoechst", "draq7"))
        plate.stacks = direct

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.positions} positions x {args.times} time points x 3 channels, {args.size}² uint16, one file a "
          f"position: written in {written:.1f} s, open_plate {opened * 1000:.0f} ms ({len(keys)} frames)")
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for name, ms in med.items():
        print(f"  read a frame, {name:9s}: median {ms:8.2f} ms of {len(picks)}")
    print(f"  ratio: {med['tifffile'] / med['addresses']:.0f}x")


if __name__ == "__main__":
    main()
