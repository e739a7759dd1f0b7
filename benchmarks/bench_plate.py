"""CPU benchmark of a whole plate: read + segment + write, and peak memory against plate size.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_plate.py                # 2048², 2 wells x 4 times
    PYTHONPATH=. .venv/bin/python benchmarks/bench_plate.py --quick        # 512², smoke run
    PYTHONPATH=. .venv/bin/python benchmarks/bench_plate.py --json out.json

What it does:

1. Writes a synthetic plate (``synthetic.make_plate``, the cell density of the
   default 256² frame) as Gen5/Cytation single-channel TIFFs into a temporary
   folder: ``--wells`` wells x 1 site x ``--times`` time points, uncompressed
   uint16 like the imager's export. Also a copy holding only the first half of
   the time points (hard links), for the memory comparison.
2. Times ``export_plate`` (the ``segment`` command's driver) on the CPU into an
   empty output folder, ``--repeats`` times, without and with weight maps:
   frames/s of the whole job. Then the per-frame phases of one frame, each the
   median of ``--repeats``: ``Plate.read``, ``segment_frame``, and the writing of
   the training-set files (TIFFs with zlib, fsync'd, and the record).
3. Peak RSS (``VmHWM``) of a fresh process that exports half the plate, the plate,
   and two and four copies of it (hard links under other well names): flat in the
   number of frames means the plate is streamed (one frame segmented while the
   previous one is written).

Nothing here asserts; it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from livedead_gpu import SegmentParams, segment_frame, synthetic  # noqa: E402
from livedead_gpu.export import export_plate, unet_weights  # noqa: E402
from livedead_gpu.pipeline import measure_bleed  # noqa: E402
from livedead_gpu.io import open_plate  # noqa: E402
from livedead_gpu.io.training import write_record, write_training_frame  # noqa: E402

NAMES = {"brightfield": "Bright Field", "hoechst": "DAPI", "draq7": "Cy5"}


def write_plate(root: Path, size: int, wells: int, times: int, seed: int) -> int:
    names = [f"{r}{c}" for r in "BCDEFG" for c in range(2, 12)][:wells]
    n_cells = int(round(20 * (size / 256) ** 2))
    plate = synthetic.make_plate(wells=tuple(names), sites=1, n_times=times, shape=(size, size),
                                 n_cells=n_cells, seed=seed)
    root.mkdir(parents=True)
    for (well, site, t), f in plate.items():
        for c, (role, image) in enumerate((("brightfield", f.brightfield), ("hoechst", f.hoechst),
                                           ("draq7", f.draq7)), 1):
            tifffile.imwrite(root / f"{well}_02_{c}_{site + 1}_{NAMES[role]}_{t + 1:03d}.tif", image)
    return len(plate)


def half_plate(root: Path, dest: Path, times: int) -> None:
    dest.mkdir()
    for p in root.iterdir():
        if int(p.stem.rsplit("_", 1)[1]) <= times // 2:
            os.link(p, dest / p.name)


def bigger_plate(root: Path, dest: Path, copies: int) -> None:
    """``copies`` times the plate, as hard links under new well names (W1, W2, ...)."""
    dest.mkdir()
    for k in range(copies):
        for p in root.iterdir():
            well, rest = p.name.split("_", 1)
            os.link(p, dest / f"{chr(ord('H') + k)}{well[1:]}_{rest}")


def time_export(src: Path, work: Path, repeats: int, weights: bool) -> list[float]:
    out = []
    for i in range(repeats):
        dest = work / f"out-{weights}-{i}"
        start = time.perf_counter()
        s = export_plate(src, dest, weights=weights)
        out.append(time.perf_counter() - start)
        assert len(s.written) == s.frames
        shutil.rmtree(dest)
    return out


def time_phases(src: Path, work: Path, repeats: int) -> dict:
    plate = open_plate(src)
    key = plate.keys()[0]
    t_read, t_seg, t_write, t_weights, t_bleed = [], [], [], [], []
    params = SegmentParams()
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        frame = plate.read(key)
        t1 = time.perf_counter()
        r = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params)
        t2 = time.perf_counter()
        write_training_frame(work / "phases", "x", frame.stack(), r.classes, r.cells, None, frame.pixel_size,
                             uid_seed="bench")
        write_record(work / "phases", "x", {"n": i})
        t3 = time.perf_counter()
        unet_weights(r.classes, r.cells)
        t4 = time.perf_counter()
        # bleed="auto": the export measures it once per series (well and site), on its first frame
        measure_bleed(frame.hoechst, frame.draq7, params)
        t5 = time.perf_counter()
        if i:  # the first round warms up
            t_read.append(t1 - t0), t_seg.append(t2 - t1), t_write.append(t3 - t2), t_weights.append(t4 - t3)
            t_bleed.append(t5 - t4)
    return {"read": statistics.median(t_read), "segment": statistics.median(t_seg),
            "write": statistics.median(t_write), "weights": statistics.median(t_weights),
            "bleed": statistics.median(t_bleed), "cells": int(r.cells.max())}


CHILD = """
import sys, resource
sys.path.insert(0, {root!r})
from livedead_gpu.export import export_plate
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
base = kib("VmRSS")
s = export_plate({src!r}, {out!r})
print(s.frames, base, kib("VmHWM"))
"""


def peak_rss(src: Path, out: Path) -> dict:
    code = CHILD.format(root=str(HERE.parent), src=str(src), out=str(out))
    # through a shell that forks, so the child's peak is its own (see bench_frame.py)
    proc = subprocess.run(["/bin/sh", "-c", f'"{sys.executable}" -c "$0"; true', code],
                          capture_output=True, text=True, check=True)
    frames, base, hwm = (int(x) for x in proc.stdout.split())
    shutil.rmtree(out)
    return {"frames": frames, "rss_after_import_mib": base / 1024, "peak_rss_mib": hwm / 1024}


def git(*a):
    r = subprocess.run(["git", "-C", str(HERE.parent), *a], capture_output=True, text=True)
    return r.stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--wells", type=int, default=2)
    ap.add_argument("--times", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="512², 1 repeat")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tmp", type=Path, help="where the plate is written (default: the system temp dir)")
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.repeats = 512, 1

    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        n = write_plate(work / "plate", a.size, a.wells, a.times, a.seed)
        half_plate(work / "plate", work / "half", a.times)
        print(f"plate: {a.wells} wells x 1 site x {a.times} times = {n} frames of {a.size}², "
              f"written in {time.perf_counter() - t0:.1f} s")
        plain = time_export(work / "plate", work, a.repeats, weights=False)
        weighted = time_export(work / "plate", work, a.repeats, weights=True)
        phases = time_phases(work / "plate", work, max(a.repeats, 3))
        bigger_plate(work / "plate", work / "double", 2)
        bigger_plate(work / "plate", work / "quadruple", 4)
        rss = [peak_rss(work / name, work / f"rss-{name}") for name in ("half", "plate", "double", "quadruple")]

    res = {
        "size": a.size, "frames": n, "repeats": a.repeats,
        "export_s": statistics.median(plain), "export_weights_s": statistics.median(weighted),
        "frames_per_s": n / statistics.median(plain), "frames_per_s_weights": n / statistics.median(weighted),
        "phases_ms": {k: v * 1e3 if k != "cells" else v for k, v in phases.items()},
        "memory": rss,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "opencv": cv2.__version__, "tifffile": tifffile.__version__,
                    "cv2_threads": cv2.getNumThreads()},
        "git": git("rev-parse", "--short", "HEAD"),
    }
    print(f"export_plate, CPU: {res['frames_per_s']:.2f} frames/s ({res['export_s']:.2f} s for {n} frames); "
          f"with weight maps {res['frames_per_s_weights']:.2f} frames/s")
    ph = res["phases_ms"]
    print(f"one frame ({ph['cells']} cells): read {ph['read']:.1f} ms, segment {ph['segment']:.1f} ms, "
          f"write {ph['write']:.1f} ms, weight map {ph['weights']:.1f} ms; "
          f"the plate's bleed, once per series: {ph['bleed']:.1f} ms")
    for m in rss:
        print(f"peak RSS exporting {m['frames']} frames: {m['peak_rss_mib']:.0f} MiB "
              f"(after imports {m['rss_after_import_mib']:.0f} MiB)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
