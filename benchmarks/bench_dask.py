"""Plate export on Dask: frames/s with 1 and 2 worker processes, and worker peak memory against plate size.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_dask.py              # 1024², 2 wells x 8 times
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dask.py --quick      # 256², smoke run
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dask.py --nanny-malloc --json out.json

What it does:

1. Writes a synthetic Gen5 plate (`bench_plate.write_plate`).
2. Times ``export_plate`` into an empty folder, the variants in turn in each of
   ``--repeats`` rounds (so a change of the machine's load hits them all), median
   per variant: serially (this process, OpenCV's own threads, then
   ``cv2.setNumThreads(1)``), and on a `distributed.LocalCluster` of 1 and 2
   worker processes with one thread each and ``opencv_threads=1`` (OpenCV's
   threads would otherwise already spread one worker over every core, and the
   scaling would measure OpenCV, not Dask), with the writes overlapped with the
   next frame's segmentation (the default, `OVERLAP_WRITES`) and not (one core
   per worker thread). Clusters are started and warmed up (one small export)
   before the clock starts. ``--nanny-malloc`` adds clusters whose workers keep
   the malloc setting Dask's nanny starts them with and do not overlap writes
   (the code before issue 6's fix). Each timed Dask run is checked
   byte-identical to the serial output. As the machine's own ceiling for one
   core per worker, without Dask: one plain process pinned to one core
   (``os.sched_setaffinity``) exporting the plate serially, and two such
   processes on two cores, each exporting half of the wells (imports done before
   the clock starts).
3. One frame's phases (read, segment, write with its record; median over the
   plate's frames after the first) and minor page faults, in this process and in
   a worker process, tuned and (``--nanny-malloc``) not.
4. Peak RSS (``VmHWM``) of every worker of a fresh 2-worker cluster exporting
   the plate and 2 and 4 copies of it (hard links): flat means frames are
   streamed through the workers, never gathered.

5. ``--gpu`` (a machine with a CUDA device and the GPU extras): one GPU with its
   CPU cores against CPU workers only, on the same plate: serially with
   ``backend="gpu"``; one worker process of ``--gpu-threads`` threads (default:
   every core) all on the GPU backend, whose CPU watershed runs in those
   threads; and ``--cpu-workers`` (default: every core) one-thread CPU workers.
   Each GPU output is checked byte-identical to the serial GPU run, the CPU ones
   to the serial CPU run (GPU and CPU labels agree on >= 99.9 % of pixels, not
   byte for byte).

Nothing here asserts but the byte identity; it reports.
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

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import cloudpickle  # noqa: E402
import distributed  # noqa: E402
from bench_plate import bigger_plate, git, write_plate  # noqa: E402

from livedead_gpu.distributed import local_cluster  # noqa: E402
from livedead_gpu.export import export_plate  # noqa: E402

# Workers cannot import benchmarks/: this module's functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _keep_nanny_malloc():
    """In a worker: leave the nanny's malloc setting as it is (the behaviour before the fix)."""
    import livedead_gpu.distributed as d

    d._malloc["off"] = True


def cluster(n, nanny_malloc=False):
    c = local_cluster(n, threads_per_worker=1, memory_limit="2GiB")
    client = distributed.Client(c)
    if nanny_malloc:
        client.run(_keep_nanny_malloc)
    return c, client


def serial_once(src, dest, threads, backend="cpu"):
    """Seconds of one serial export (``threads``: OpenCV threads, 0 for its default)."""
    old = cv2.getNumThreads()
    cv2.setNumThreads(threads if threads else old)
    try:
        t0 = time.perf_counter()
        export_plate(src, dest, backend=backend)
        return time.perf_counter() - t0
    finally:
        cv2.setNumThreads(old)


def cluster_once(src, dest, client, reference, overlap=True, backend="cpu"):
    """Seconds of one export on ``client``; the output must equal ``reference`` byte for byte.
    ``overlap``: `livedead_gpu.distributed.OVERLAP_WRITES` for this run."""
    import livedead_gpu.distributed as d

    old, d.OVERLAP_WRITES = d.OVERLAP_WRITES, overlap
    try:
        t0 = time.perf_counter()
        export_plate(src, dest, backend=backend, scheduler=client, opencv_threads=1)
        seconds = time.perf_counter() - t0
    finally:
        d.OVERLAP_WRITES = old
    same = tree(dest) == reference
    shutil.rmtree(dest)
    if not same:
        raise AssertionError(f"{dest.name}: output differs from the serial run")
    return seconds


def time_serial(src, work, repeats, threads):
    """Median seconds of ``repeats`` serial exports; the first one's output (``serial-0-0``) is kept
    when ``threads`` is 0."""
    secs = []
    for i in range(repeats):
        dest = work / f"serial-{threads}-{i}"
        secs.append(serial_once(src, dest, threads))
        if i or threads:
            shutil.rmtree(dest)
    return statistics.median(secs)


def time_cluster(src, work, small, repeats, n, reference, threads=1, backend="cpu"):
    """Median seconds of ``repeats`` exports on a fresh, warmed-up cluster of ``n`` workers
    of ``threads`` threads each, segmenting on ``backend``."""
    c = local_cluster(n, threads_per_worker=threads, memory_limit="2GiB")
    client = distributed.Client(c)
    try:
        warm = work / f"warm-{n}-{backend}"
        export_plate(small, warm, backend=backend, scheduler=client, opencv_threads=1)   # imports, first task
        shutil.rmtree(warm)   # the next call warms up its own cluster: no frame left to resume
        return statistics.median(cluster_once(src, work / f"dask-{n}-{backend}-{i}", client, reference,
                                              backend=backend) for i in range(repeats))
    finally:
        client.close()
        c.close()


# A plain process: pinned to one core, OpenCV on one thread, warmed up (imports, a small
# export) before "go".
_PINNED = """
import os, shutil, sys
os.sched_setaffinity(0, {int(sys.argv[3])})
import cv2
cv2.setNumThreads(1)
from livedead_gpu.export import export_plate
export_plate(sys.argv[4], sys.argv[2] + "-warm")
shutil.rmtree(sys.argv[2] + "-warm")
print("ready", flush=True)
sys.stdin.readline()
export_plate(sys.argv[1], sys.argv[2])
"""


def halves(plate, work):
    """The plate's wells in two plates of hard links (``work/half0``, ``work/half1``)."""
    wells = sorted({p.name.split("_", 1)[0] for p in plate.iterdir()})
    parts = []
    for k, group in enumerate((wells[: len(wells) // 2], wells[len(wells) // 2 :])):
        dest = work / f"half{k}"
        dest.mkdir()
        for p in plate.iterdir():
            if p.name.split("_", 1)[0] in group:
                os.link(p, dest / p.name)
        parts.append(dest)
    return parts


def pinned_once(plates, small, work, tag):
    """Seconds for plain processes, one per plate, each pinned to its own core, to export their plates
    serially (no Dask): what the machine gives independent one-core workers."""
    procs = [subprocess.Popen([sys.executable, "-c", _PINNED, str(src), str(work / f"{tag}-{k}"), str(k), str(small)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for k, src in enumerate(plates)]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a pinned export process failed to start")
    start = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    if any(proc.wait() for proc in procs):
        raise RuntimeError("a pinned export process failed")
    seconds = time.perf_counter() - start
    for k in range(len(plates)):
        shutil.rmtree(work / f"{tag}-{k}")
    return seconds


def _minflt():
    import resource

    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def frame_phases(src, out, opencv_threads, tune):
    """Median ms of each phase of a frame (read, segment, write + record) and page faults per frame,
    over the plate's frames after the first, in the process that runs this."""
    from livedead_gpu.distributed import _tune_malloc
    from livedead_gpu.export import _as_uint16, _source_signature, _write_frame
    from livedead_gpu.io import open_plate
    from livedead_gpu.io.training import frame_stem
    from livedead_gpu.params import SegmentParams
    from livedead_gpu.pipeline import segment_frame

    old = cv2.getNumThreads()
    cv2.setNumThreads(opencv_threads)
    try:
        plate, params = open_plate(src), SegmentParams()
        digest, options = params.digest(), {"weights": None, "patches": None}
        rows = []
        for key in plate.keys():
            f0, t0 = _minflt(), time.perf_counter()
            frame = plate.read(key)
            if tune:   # as the frame task does
                _tune_malloc(frame.brightfield.size)
            image = _as_uint16(frame.stack(), frame.sources)
            t1 = time.perf_counter()
            r = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params)
            t2 = time.perf_counter()
            _write_frame(Path(out), frame_stem(*key), key, frame, image, r, digest, options,
                         _source_signature(plate, key))
            t3 = time.perf_counter()
            rows.append((t1 - t0, t2 - t1, t3 - t2, _minflt() - f0))
        rows = rows[1:] or rows
        med = [statistics.median(col) for col in zip(*rows)]
    finally:
        cv2.setNumThreads(old)
    shutil.rmtree(out, ignore_errors=True)
    import livedead_gpu.distributed as d

    return {"read_ms": med[0] * 1e3, "segment_ms": med[1] * 1e3, "write_ms": med[2] * 1e3,
            "page_faults": int(med[3]), "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "malloc_mmap_threshold": d._malloc["mmap"] or None}


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


def gpu_rounds(plate, small, work, repeats, gpu_threads, cpu_workers):
    """Frames/s of one GPU with its cores against CPU workers only (see the module notes, 5)."""
    runs = {"serial, backend cpu": [], "serial, backend gpu": [],
            f"Dask 1 worker x {gpu_threads} threads, backend gpu": [],
            f"Dask {cpu_workers} workers x 1 thread, backend cpu": []}
    refs = {}
    for i in range(repeats):
        for backend in ("cpu", "gpu"):
            dest = work / f"gpu-serial-{backend}-{i}"
            runs[f"serial, backend {backend}"].append(serial_once(plate, dest, 0, backend))
            if backend not in refs:
                refs[backend] = tree(dest)
            elif tree(dest) != refs[backend]:
                raise AssertionError(f"{dest.name}: serial {backend} output differs between runs")
            shutil.rmtree(dest)
        for label, workers, threads, backend in (
                (f"Dask 1 worker x {gpu_threads} threads, backend gpu", 1, gpu_threads, "gpu"),
                (f"Dask {cpu_workers} workers x 1 thread, backend cpu", cpu_workers, 1, "cpu")):
            runs[label].append(time_cluster(plate, work, small, 1, workers, refs[backend], threads, backend))
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--wells", type=int, default=2)
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nanny-malloc", action="store_true",
                    help="also time clusters whose workers keep the nanny's malloc setting (before the fix)")
    ap.add_argument("--no-memory", action="store_true", help="skip the worker peak RSS part")
    ap.add_argument("--quick", action="store_true", help="256², 1 repeat")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--gpu", action="store_true", help="also one GPU with its cores vs CPU workers only (module notes, 5)")
    ap.add_argument("--gpu-threads", type=int, default=os.cpu_count(), help="threads of the GPU worker (every core)")
    ap.add_argument("--cpu-workers", type=int, default=os.cpu_count(), help="CPU-only workers (every core)")
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.times, a.repeats = 256, 4, 1
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    load = os.getloadavg()
    # name, label, None (serial), "pinned" (plain processes) or (workers, nanny malloc, overlapped writes)
    variants = [("serial", "serial, OpenCV threads default", None), ("serial1", "serial, OpenCV 1 thread", None),
                ("dask1", "Dask 1 worker x 1 thread", (1, False, True)),
                ("dask2", "Dask 2 workers x 1 thread", (2, False, True)),
                ("dask1_flat", "Dask 1 worker x 1 thread, writes not overlapped", (1, False, False)),
                ("dask2_flat", "Dask 2 workers x 1 thread, writes not overlapped", (2, False, False))]
    pinning = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2 and a.wells >= 2
    if pinning:
        # The machine's own scaling: two independent one-core exporters, no Dask.
        variants += [("pinned1", "1 plain process pinned to 1 core (no Dask)", "pinned"),
                     ("pinned2", "2 plain processes, 1 core each (no Dask)", "pinned")]
    if a.nanny_malloc:
        variants += [("dask1_before", "Dask 1 worker x 1 thread, before (nanny malloc, no overlap)", (1, True, False)),
                     ("dask2_before", "Dask 2 workers x 1 thread, before (nanny malloc, no overlap)", (2, True, False))]
    secs = {name: [] for name, _, _ in variants}
    specs = list(dict.fromkeys(spec[:2] for _, _, spec in variants if isinstance(spec, tuple)))   # (workers, malloc)
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        work = Path(tmp)
        n = write_plate(work / "plate", a.size, a.wells, a.times, 0)
        parts = halves(work / "plate", work) if pinning else []
        write_plate(work / "small", 128, 1, 2, 1)
        serial_once(work / "small", work / "warm-serial", 0)
        reference = None
        phases = {}
        # Rounds: every variant once per round. Only one cluster is up at a time (an idle
        # 2-worker cluster costs ~9 % of a core: heartbeats, memory monitors), none during
        # the serial runs; each is started and warmed up before its clock starts.
        for i in range(a.repeats):
            loads.append(os.getloadavg()[0])
            for name, _, spec in variants:
                if spec is None:
                    dest = work / f"{name}-{i}"
                    secs[name].append(serial_once(work / "plate", dest, 1 if name == "serial1" else 0))
                    if reference is None:
                        reference = tree(dest)
                    shutil.rmtree(dest)
            if pinning:
                secs["pinned1"].append(pinned_once([work / "plate"], work / "small", work, f"pinned1-{i}"))
                secs["pinned2"].append(pinned_once(parts, work / "small", work, f"pinned2-{i}"))
            if i == 0:
                phases["this process (serial), OpenCV 1 thread"] = frame_phases(work / "plate", work / "ph", 1, False)
            for spec in specs:
                c, client = cluster(*spec)
                try:
                    export_plate(work / "small", work / f"warm-{i}-{spec}", scheduler=client, opencv_threads=1)
                    for name, _, vspec in variants:
                        if isinstance(vspec, tuple) and vspec[:2] == spec:
                            secs[name].append(cluster_once(work / "plate", work / f"{name}-{i}", client, reference,
                                                           overlap=vspec[2]))
                    if i == 0 and spec[0] == 1:
                        label = "worker, nanny malloc (before)" if spec[1] else "worker"
                        phases[label] = client.submit(frame_phases, work / "plate", work / f"ph-{spec[1]}", 1, True,
                                                      pure=False).result()
                finally:
                    client.close()
                    c.close()
        mem = [] if a.no_memory else worker_peaks(work / "plate", work, (1, 2, 4))
        gpu = gpu_rounds(work / "plate", work / "small", work, a.repeats, a.gpu_threads, a.cpu_workers) if a.gpu else {}
    med = {name: statistics.median(v) for name, v in secs.items()}
    res = {
        "git": git("rev-parse", "--short", "HEAD"), "cpus": os.cpu_count(), "machine": platform.processor(),
        "frames": n, "size": a.size, "repeats": a.repeats, "statistic": "median", "load_average_before": load,
        "load_average_rounds": loads,
        "seconds": secs, "fps": {name: n / v for name, v in med.items()},
        "serial_fps": n / med["serial"], "serial_opencv1_fps": n / med["serial1"],
        "dask_1_worker_fps": n / med["dask1"], "dask_2_workers_fps": n / med["dask2"],
        "speedup_2_vs_1": med["dask1"] / med["dask2"],
        "speedup_2_vs_1_not_overlapped": med["dask1_flat"] / med["dask2_flat"],
        "speedup_2_vs_1_plain_pinned": med["pinned1"] / med["pinned2"] if pinning else None,
        "phases": phases, "memory": mem,
        "gpu_fps": {label: n / statistics.median(v) for label, v in gpu.items()},
    }
    res["load_average_after"] = os.getloadavg()
    print(f"{n} frames of {a.size}², {os.cpu_count()} cores, git {res['git']}, load average before "
          f"{load[0]:.2f}, at each round's start " + ", ".join(f"{x:.2f}" for x in loads)
          + f", after {res['load_average_after'][0]:.2f} (this run keeps ~2 busy; other jobs share the cores); "
          f"median of {a.repeats} rounds")
    for name, label, _ in variants:
        runs = ", ".join(f"{n / s:.2f}" for s in secs[name])
        print(f"  {label + ':':62s} {n / med[name]:5.2f} frames/s  ({runs})")
    print(f"  2 workers / 1 worker: {res['speedup_2_vs_1']:.2f}x; writes not overlapped "
          f"(one core per worker): {res['speedup_2_vs_1_not_overlapped']:.2f}x")
    if pinning:
        print(f"  2 plain pinned processes / 1 (the machine's ceiling for one core per worker): "
              f"{res['speedup_2_vs_1_plain_pinned']:.2f}x")
    print("  one frame (ms; page faults):")
    for label, ph in phases.items():
        total = ph["read_ms"] + ph["segment_ms"] + ph["write_ms"]
        print(f"    {label + ':':42s} read {ph['read_ms']:5.1f}, segment {ph['segment_ms']:6.1f}, "
              f"write {ph['write_ms']:6.1f} (sum {total:6.1f} = {1e3 / total:.2f} frames/s on one core); "
              f"{ph['page_faults']} page faults")
    for r in mem:
        print(f"  {r['frames']:4d} frames: worker peak RSS " + ", ".join(f"{m:.0f}" for m in r["worker_peak_rss_mib"])
              + " MiB")
    if gpu:
        print(f"  one GPU with its cores vs CPU workers only ({a.repeats} rounds, median):")
        for label, v in gpu.items():
            print(f"    {label + ':':52s} {n / statistics.median(v):6.2f} frames/s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
