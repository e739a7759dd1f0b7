"""Plate export on Dask: frames/s with 1 and 2 worker processes, and worker peak memory against plate size.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_dask.py              # 1024², 2 wells x 8 times
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dask.py --quick      # 256², smoke run
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dask.py --json out.json

What it does:

1. Writes a synthetic Gen5 plate (`bench_plate.write_plate`).
2. Times ``export_plate`` into an empty folder: serially (this process, OpenCV's
   own threads, then ``cv2.setNumThreads(1)``), and on a `distributed.LocalCluster`
   of 1 and 2 worker processes with one thread each and ``opencv_threads=1``
   (OpenCV's threads would otherwise already spread one worker over every core,
   and the scaling would measure OpenCV, not Dask). The cluster is started and
   warmed up (one small export) before the clock starts; the best of
   ``--repeats``. Each timed run is checked byte-identical to the serial output.
3. Peak RSS (``VmHWM``) of every worker of a fresh 2-worker cluster exporting
   the plate and 2 and 4 copies of it (hard links): flat means frames are
   streamed through the workers, never gathered.

Nothing here asserts but the byte identity; it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import distributed  # noqa: E402
from bench_plate import bigger_plate, git, write_plate  # noqa: E402

from livedead_gpu.export import export_plate  # noqa: E402


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}


def cluster(n):
    c = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                 memory_limit="2GiB")
    return c, distributed.Client(c)


def time_serial(src, work, repeats, threads):
    old = cv2.getNumThreads()
    cv2.setNumThreads(threads if threads else old)
    best = float("inf")
    try:
        for i in range(repeats):
            dest = work / f"serial-{threads}-{i}"
            t0 = time.perf_counter()
            export_plate(src, dest)
            best = min(best, time.perf_counter() - t0)
            if i or threads:
                shutil.rmtree(dest)
    finally:
        cv2.setNumThreads(old)
    return best


def time_cluster(src, work, small, repeats, n, reference):
    c, client = cluster(n)
    try:
        export_plate(small, work / f"warm-{n}", scheduler=client, opencv_threads=1)   # imports, first task
        best = float("inf")
        for i in range(repeats):
            dest = work / f"dask-{n}-{i}"
            t0 = time.perf_counter()
            export_plate(src, dest, scheduler=client, opencv_threads=1)
            best = min(best, time.perf_counter() - t0)
            same = tree(dest) == reference
            shutil.rmtree(dest)
            if not same:
                raise AssertionError(f"{n} workers: output differs from the serial run")
        return best
    finally:
        client.close()
        c.close()


def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_peaks(src, work, copies):
    rows = []
    for k in copies:
        plate = src if k == 1 else work / f"copies-{k}"
        if k > 1:
            bigger_plate(src, plate, k)
        c, client = cluster(2)
        try:
            s = export_plate(plate, work / f"mem-{k}", scheduler=client, opencv_threads=1)
            peaks = client.run(hwm)
        finally:
            client.close()
            c.close()
        shutil.rmtree(work / f"mem-{k}")
        rows.append({"frames": s.frames, "worker_peak_rss_mib": sorted(peaks.values())})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--wells", type=int, default=2)
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="256², 1 repeat")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.times, a.repeats = 256, 4, 1
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        work = Path(tmp)
        n = write_plate(work / "plate", a.size, a.wells, a.times, 0)
        write_plate(work / "small", 128, 1, 2, 1)
        serial = time_serial(work / "plate", work, a.repeats, 0)
        reference = tree(work / "serial-0-0")   # the first serial run is kept
        serial1 = time_serial(work / "plate", work, a.repeats, 1)
        one = time_cluster(work / "plate", work, work / "small", a.repeats, 1, reference)
        two = time_cluster(work / "plate", work, work / "small", a.repeats, 2, reference)
        mem = worker_peaks(work / "plate", work, (1, 2, 4))
    res = {
        "git": git("rev-parse", "--short", "HEAD"), "cpus": os.cpu_count(), "machine": platform.processor(),
        "frames": n, "size": a.size, "load_average_before": load,
        "serial_fps": n / serial, "serial_opencv1_fps": n / serial1,
        "dask_1_worker_fps": n / one, "dask_2_workers_fps": n / two, "speedup_2_vs_1": one / two,
        "memory": mem,
    }
    res["load_average_after"] = os.getloadavg()
    print(f"{n} frames of {a.size}², {os.cpu_count()} cores, git {res['git']}, load average before "
          f"{res['load_average_before'][0]:.1f}, after {res['load_average_after'][0]:.1f} (other jobs share the cores)")
    print(f"  serial (OpenCV threads {cv2.getNumThreads()}): {res['serial_fps']:.2f} frames/s")
    print(f"  serial (OpenCV threads 1):  {res['serial_opencv1_fps']:.2f} frames/s")
    print(f"  Dask 1 worker x 1 thread:   {res['dask_1_worker_fps']:.2f} frames/s")
    print(f"  Dask 2 workers x 1 thread:  {res['dask_2_workers_fps']:.2f} frames/s "
          f"({res['speedup_2_vs_1']:.2f}x of 1 worker)")
    for r in mem:
        print(f"  {r['frames']:4d} frames: worker peak RSS " + ", ".join(f"{m:.0f}" for m in r["worker_peak_rss_mib"])
              + " MiB")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
