"""The benchmark suite: one command, one markdown table, one JSON.

Run from the repository root (or as ``livedead-gpu bench``)::

    PYTHONPATH=. .venv/bin/python benchmarks/suite.py                   # 1024², 2048², 4096²
    PYTHONPATH=. .venv/bin/python benchmarks/suite.py --sizes 1024,2048 --out bench-out
    PYTHONPATH=. .venv/bin/python benchmarks/suite.py --quick           # 256², 2 repeats: a smoke run

It writes ``OUT/suite.md`` and ``OUT/suite.json`` (``OUT`` = ``--out``, default
``bench-out``) and prints the markdown.

What it measures, on synthetic frames (``synthetic.make_frame`` at the cell density
of the default 256² frame, 12-bit, seed 0):

1. **Time per stage and whole frame** at each size, for
   - ``article``: the article's code transcribed (``benchmarks/article.py``), on the
     stage inputs ``bench_frame.make_inputs`` builds (the package's intermediates,
     so both get the same arrays; its whole frame is its own);
   - ``scikit-image``: the pipeline a user would write (``benchmarks/skimage_pipeline.py``),
     each stage on that pipeline's own intermediates;
   - ``cpu``: the package's CPU backend (NumPy/OpenCV);
   - ``gpu resident`` (arrays on the device, results left there) and ``gpu end to end``
     (host arrays in, host results out) when a GPU is present (``--backend``);
   - ``· voronoi``: the package with ``separation="voronoi"`` instead of the watershed.

   Every implementation of a stage is timed in the same run on the same frame: one
   warm-up call each, then ``--repeats`` rounds calling each in turn
   (``time.perf_counter``, with ``Backend.synchronize`` before and after every call).
   The table shows medians; ``× article`` is the article's median over this one's.
2. **Peak memory** of one whole frame in a fresh process (``VmHWM`` growth, reset
   after a warm-up on a 256² crop; and the CuPy memory pool's size for the GPU).
3. **Plate export**: frames/s of ``export_plate`` (read + segment + write) on a
   synthetic Gen5 plate, serial and on a Dask ``LocalCluster`` of 1..cores workers
   (``livedead_gpu.distributed``; the row says "not measured" without it).
4. **Label quality**: nucleus and cell object F1 (IoU >= 0.5) and live/dead counts
   against the synthetic ground truth; and ``benchmarks/bench_quality.py`` on the
   real annotated sets in ``../shared/data`` when present (skipped otherwise and
   with ``--quick``).

Nothing here asserts a speed; it reports. Other jobs on the machine move absolute
times; ratios within one run move less.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import article  # noqa: E402  (benchmarks/article.py)
import bench_frame  # noqa: E402
from livedead_gpu import SegmentParams, segment_frame, stages, synthetic  # noqa: E402
from livedead_gpu.backends import get_backend  # noqa: E402
from livedead_gpu.pipeline import segment_arrays  # noqa: E402
from livedead_gpu.stages import gradient as G  # noqa: E402

try:  # scikit-image is a test extra, not a dependency of the package
    import skimage_pipeline as SK
except ImportError as e:  # pragma: no cover
    SK, SK_MISSING = None, f"scikit-image not installed ({e})"
else:
    SK_MISSING = None

QUICK_SIZES, QUICK_REPEATS = (256,), 2
FULL_SIZES, FULL_REPEATS = (1024, 2048, 4096), 7

STAGES = [
    "threshold (Hoechst)",
    "gradient (Sobel)",
    "gradient threshold",
    "cell-area morphology + fill",
    "nuclei (2 channels)",
    "separation",
    "class mask",
    "whole frame",
]
IMPLEMENTATIONS = [
    "article",
    "scikit-image",
    "cpu",
    "cpu · voronoi",
    "gpu resident",
    "gpu resident · voronoi",
    "gpu end to end",
    "gpu end to end · voronoi",
]
# What each implementation's "threshold" row is (the others are the same step everywhere).
THRESHOLD_KIND = {"article": "block-max", "scikit-image": "Otsu"}


# -- the calls to time ------------------------------------------------------------------------------

def article_calls(d: dict) -> dict:
    """The article's stages as `bench_frame` times them (stage -> zero-argument call)."""
    B = bench_frame
    fns = [B.time_threshold_article, B.time_gradient_article, B.time_gradient_threshold_article,
           B.time_morphology_article, B.time_nuclei_article, B.time_separation_article,
           B.time_classes_article, B.time_frame_article]
    return {stage: (lambda fn=fn: fn(d)) for stage, fn in zip(STAGES, fns)}


def skimage_calls(d: dict) -> dict:
    """The scikit-image pipeline's stages, each on that pipeline's own intermediates."""
    bf, ho, d7 = d["bf"], d["ho"], d["d7"]
    grad = SK.gradient(bf)
    thr = SK.gradient_threshold(grad)
    area = SK.cell_area_mask(grad, thr)
    labels, dead, _, _ = SK.nuclei(ho, d7)
    cells, outlines = SK.separate(grad, area, labels)
    return {
        "threshold (Hoechst)": lambda: SK.threshold(ho),
        "gradient (Sobel)": lambda: SK.gradient(bf),
        "gradient threshold": lambda: SK.gradient_threshold(grad),
        "cell-area morphology + fill": lambda: SK.cell_area_mask(grad, thr),
        "nuclei (2 channels)": lambda: SK.nuclei(ho, d7),
        "separation": lambda: SK.separate(grad, area, labels),
        "class mask": lambda: SK.classes(cells, outlines, labels, dead),
        "whole frame": lambda: SK.skimage_frame(bf, ho, d7),
    }


def backend_calls(be, d: dict, params: SegmentParams, separation: str, end_to_end: bool) -> dict:
    """The package's stages on backend ``be``, inputs already on its device.

    The stages are those `segment_frame` runs (`segment_arrays`), as in
    ``bench_frame``'s "ours" and ``bench_gpu``'s per-stage calls. With
    ``end_to_end`` the whole frame is `segment_frame` on host arrays (transfers and
    input checks included); else `segment_arrays` on the device arrays.
    """
    p = SegmentParams.from_dict({**params.to_dict(), "separation": separation})
    bf, ho, d7 = (be.to_device(d[k]) for k in ("bf", "ho", "d7"))
    area = stages.cell_area(bf, p, be)
    nuc, _, _, _ = stages.find_nuclei(ho, d7, p, be)
    cells, outlines = stages.separate_cells(area.mask, nuc.labels, be, separation)
    if p.cell_threshold == "block-max":
        grad = stages.quantize(area.gradient, area.scale, be)

        def gradient():
            g = stages.sobel_magnitude(bf, be)
            return stages.quantize(g, stages.gradient_scale(g, p.coarseness, p.gradient_levels, be), be)

        def gradient_threshold():
            return stages.block_max_threshold(grad, p.offset, p.coarseness, be)
    else:
        grad = area.gradient

        def gradient():
            return G.smoothed_gradient(bf, p.smoothing, be)

        def gradient_threshold():
            return G.noise_threshold(bf, grad, p.coarseness, p.offset, p.smoothing, p.noise_ceiling, be)

    def morphology():
        m = be.greater(grad, area.threshold)
        m = be.dilate(m, p.kernel_size, p.dilations)
        m = be.erode(m, p.kernel_size, p.erosions)
        return be.fill_holes(m)

    host = (d["bf"], d["ho"], d["d7"])
    return {
        "threshold (Hoechst)": lambda: stages.block_max_threshold(ho, p.offset, p.coarseness, be),
        "gradient (Sobel)": gradient,
        "gradient threshold": gradient_threshold,
        "cell-area morphology + fill": morphology,
        "nuclei (2 channels)": lambda: stages.find_nuclei(ho, d7, p, be),
        "separation": lambda: stages.separate_cells(area.mask, nuc.labels, be, separation),
        "class mask": lambda: stages.class_mask(cells, outlines, nuc.labels, nuc.dead, be),
        "whole frame": (lambda: segment_frame(*host, p, backend=be)) if end_to_end
        else (lambda: segment_arrays(bf, ho, d7, p, be)),
    }


def gpu_backend(choice: str):
    """(backend or None, description): the GPU the suite times, per ``--backend``."""
    if choice == "cpu":
        return None, "not measured (--backend cpu)"
    if choice == "standin":
        import scipy.ndimage
        import skimage

        from livedead_gpu.backends.gpu import ArrayBackend

        return ArrayBackend(np, scipy.ndimage, skimage, name="standin"), \
            "NumPy/SciPy/scikit-image stand-ins for CuPy/cuCIM (--backend standin: no GPU, times mean nothing)"
    try:
        be = get_backend("gpu")
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return be, f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB"
    except Exception as e:  # no CuPy, no device
        if choice == "gpu":
            raise RuntimeError(f"--backend gpu but no GPU backend: {e}") from None
        why = (str(e).splitlines() or [type(e).__name__])[0].split(": pip install")[0]
        return None, f"not measured: no GPU ({why})"


def implementation_calls(d, params, gpu) -> dict:
    """implementation -> (backend, {stage: call}); only the implementations this run has."""
    cpu = get_backend("cpu")
    impls = {"article": (cpu, article_calls(d))}
    if SK is not None:
        impls["scikit-image"] = (cpu, skimage_calls(d))
    impls["cpu"] = (cpu, backend_calls(cpu, d, params, "watershed", True))
    impls["cpu · voronoi"] = (cpu, backend_calls(cpu, d, params, "voronoi", True))
    if gpu is not None:
        impls["gpu resident"] = (gpu, backend_calls(gpu, d, params, "watershed", False))
        impls["gpu resident · voronoi"] = (gpu, backend_calls(gpu, d, params, "voronoi", False))
        e2e = {"watershed": backend_calls(gpu, d, params, "watershed", True),
               "voronoi": backend_calls(gpu, d, params, "voronoi", True)}
        impls["gpu end to end"] = (gpu, {"whole frame": e2e["watershed"]["whole frame"]})
        impls["gpu end to end · voronoi"] = (gpu, {"whole frame": e2e["voronoi"]["whole frame"]})
    return impls


def rows_of(impls: dict) -> dict:
    """stage -> [(implementation, backend, call)], voronoi variants only where they differ."""
    out = {}
    for stage in STAGES:
        row = []
        for name, (be, calls) in impls.items():
            if stage not in calls:
                continue
            if "voronoi" in name and stage not in ("separation", "whole frame"):
                continue  # the same call as the watershed variant
            row.append((name, be, calls[stage]))
        out[stage] = row
    return out


# -- timing ---------------------------------------------------------------------------------------

def time_round_robin(calls, repeats: int) -> dict:
    """Seconds of each call: one warm-up each, then ``repeats`` rounds calling each in turn.

    ``calls`` is a list of (name, backend, fn); the device is synchronised before and
    after every timed call. Returns name -> list of seconds.
    """
    for _, be, fn in calls:
        fn()
        be.synchronize()
    gc.collect()
    times = {name: [] for name, _, _ in calls}
    for _ in range(repeats):
        for name, be, fn in calls:
            be.synchronize()
            t = time.perf_counter()
            fn()
            be.synchronize()
            times[name].append(time.perf_counter() - t)
    return times


def time_size(size: int, repeats: int, params, gpu, seed: int, log) -> tuple[list, dict]:
    t0 = time.perf_counter()
    d = bench_frame.make_inputs(size, 12, seed)
    info = {"size": size, "n_cells": d["n_cells"], "nuclei_found": int(d["labels"].max()),
            "input_mib": round(3 * d["bf"].nbytes / 2**20, 1), "inputs_s": round(time.perf_counter() - t0, 2)}
    impls = implementation_calls(d, params, gpu)
    rows = []
    for stage, calls in rows_of(impls).items():
        times = time_round_robin(calls, repeats)
        ref = statistics.median(times["article"]) if "article" in times else None
        for name, _, _ in calls:
            med = statistics.median(times[name])
            rows.append({
                "stage": stage, "implementation": name, "size": size, "median_ms": med * 1e3,
                "min_ms": min(times[name]) * 1e3, "repeats": repeats,
                "vs_article": ref / med if ref else None,
                "vs_cpu": None,
            })
        cpu_ms = next((r["median_ms"] for r in rows if r["stage"] == stage and r["implementation"] == "cpu"
                       and r["size"] == size), None)
        for r in rows:
            if r["stage"] == stage and r["size"] == size and cpu_ms:
                r["vs_cpu"] = cpu_ms / r["median_ms"]
        log(f"  {size}²  {stage}: " + ", ".join(f"{n} {statistics.median(t) * 1e3:.1f}" for n, t in times.items()))
    del d, impls
    gc.collect()
    return rows, info


# -- memory ---------------------------------------------------------------------------------------

MEMORY_IMPLEMENTATIONS = ("article", "scikit-image", "cpu", "cpu · voronoi", "gpu end to end",
                          "gpu end to end · voronoi")


def _frame_fn(impl: str):
    if impl == "article":
        return article.article_frame
    if impl == "scikit-image":
        return SK.skimage_frame
    sep = "voronoi" if "voronoi" in impl else "watershed"
    p = SegmentParams(separation=sep)
    backend = "gpu" if impl.startswith("gpu") else "cpu"
    return lambda bf, ho, d7: segment_frame(bf, ho, d7, p, backend=backend)


def _memory_child(path: str, impl: str) -> None:
    """In a fresh interpreter: peak RSS growth (and GPU pool size) of one frame, as JSON."""
    with np.load(path) as z:
        bf, ho, d7 = z["bf"], z["ho"], z["d7"]
    fn = _frame_fn(impl)
    c = min(256, bf.shape[0] // 2)  # a crop: loads libraries, starts threads, leaves the peak to the frame
    fn(bf[:c, :c], ho[:c, :c], d7[:c, :c])
    pool = None
    if impl.startswith("gpu"):
        import cupy

        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        reset = True
    except OSError:
        reset = False
    before_rss, before_hwm = bench_frame._status_kib("VmRSS"), bench_frame._status_kib("VmHWM")
    result = fn(bf, ho, d7)
    hwm = bench_frame._status_kib("VmHWM")
    out = {"hwm_reset": reset, "rss_growth_mib": (hwm - (before_rss if reset else before_hwm)) / 1024}
    if pool is not None:
        # The pool keeps freed blocks: its size after the call is its high-water mark.
        out["gpu_pool_mib"] = pool.total_bytes() / 2**20
    del result
    print(json.dumps(out))


def memory_size(size: int, seed: int, impls, log) -> list:
    n_cells = round(20 * (size / 256) ** 2)
    f = synthetic.make_frame(shape=(size, size), n_cells=n_cells, bit_depth=12, seed=seed)
    input_mib = 3 * f.brightfield.nbytes / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frame.npz")
        np.savez(path, bf=f.brightfield, ho=f.hoechst, d7=f.draq7)
        del f
        for impl in impls:
            cmd = [sys.executable, __file__, "--memory-child", path, impl]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
            # Through a shell that forks: a process exec'd straight from this one would
            # inherit this process's peak RSS (see bench_frame.rss_peak).
            proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd], capture_output=True,
                                  text=True, env=env)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"implementation": impl, "size": size, "error": last})
                log(f"  memory {size}² {impl}: failed: {last}")
                continue
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append({"implementation": impl, "size": size, "input_mib": input_mib, **m,
                         "rss_vs_input": m["rss_growth_mib"] / input_mib})
            log(f"  memory {size}² {impl}: {m['rss_growth_mib']:.0f} MiB")
    return rows


# -- plate export vs Dask workers -----------------------------------------------------------------

def plate_throughput(size: int, wells: int, times: int, workers: list, repeats: int, seed: int, log) -> dict:
    """frames/s of `export_plate`, serial and on Dask LocalClusters, through ``bench_dask``'s functions.

    Without ``benchmarks/bench_dask.py`` (or ``dask.distributed``) the Dask rows say
    "not measured: needs distributed" and the serial row is timed here.
    """
    import bench_plate

    from livedead_gpu.export import export_plate

    try:
        import bench_dask
        missing = None
    except ImportError as e:
        bench_dask, missing = None, f"benchmarks/bench_dask.py or dask.distributed not importable ({e})"
    # Worker processes import the package from this checkout too.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    out = {"size": size, "repeats": repeats, "statistic": "median", "rows": []}

    def add(label, n_workers, seconds, **extra):
        row = {"run": label, "workers": n_workers, "seconds": seconds,
               "frames_per_s": out["frames"] / seconds if seconds else None, **extra}
        out["rows"].append(row)
        log(f"  plate {label}: " + (f"{row['frames_per_s']:.2f} frames/s" if seconds else extra.get("not_measured")))

    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        work = Path(tmp)
        out["frames"] = bench_plate.write_plate(work / "plate", size, wells, times, seed)
        if bench_dask is None:
            secs = []
            for i in range(repeats + 1):  # the first run warms up
                t = time.perf_counter()
                export_plate(work / "plate", work / f"serial-{i}")
                secs.append(time.perf_counter() - t)
                shutil.rmtree(work / f"serial-{i}")
            add("serial, OpenCV threads default", 1, statistics.median(secs[1:]))
            add("Dask LocalCluster", None, None, not_measured=f"needs distributed: {missing}")
        else:
            # bench_dask's protocol: the first serial run is the reference every Dask
            # run must equal byte for byte; clusters are warmed up on a small plate.
            bench_plate.write_plate(work / "small", 128, 1, 2, 1)
            add("serial, OpenCV threads default", 1, bench_dask.time_serial(work / "plate", work, repeats, 0))
            reference = bench_dask.tree(work / "serial-0-0")
            add("serial, OpenCV 1 thread", 1, bench_dask.time_serial(work / "plate", work, repeats, 1))
            for w in workers:
                label = f"Dask LocalCluster, {w} worker{'s' if w > 1 else ''} x 1 thread, OpenCV 1 thread"
                try:
                    add(label, w, bench_dask.time_cluster(work / "plate", work, work / "small", repeats, w, reference))
                except Exception as e:  # bench_dask checks byte identity with the serial run
                    add(label, w, None, not_measured=f"{type(e).__name__}: {e}")
    serial = out["rows"][0]["frames_per_s"]
    for r in out["rows"]:
        r["vs_serial"] = r["frames_per_s"] / serial if r["frames_per_s"] else None
    return out


# -- label quality --------------------------------------------------------------------------------

def synthetic_quality(size: int, seed: int) -> list:
    """Nucleus and cell object F1 and live/dead counts against the synthetic frame's truth."""
    import cv2

    from livedead_gpu.evaluate import match_instances

    n_cells = round(20 * (size / 256) ** 2)
    f = synthetic.make_frame(shape=(size, size), n_cells=n_cells, bit_depth=12, seed=seed)
    bf, ho, d7 = f.brightfield, f.hoechst, f.draq7
    found = {}
    # the article: its nuclei are the components of the union of its masks, dead when
    # they touch the Draq7 mask; its cells the components of its watershed's cells
    area = article.article_cell_area(bf)
    ho_m = article.nucleusImage(ho, article.thresholdImage(ho, 1.2, 16))
    d7_m = article.nucleusImage(d7, article.thresholdImage(d7, 1.2, 16))
    cells_m, _ = article.segregate_cells(area, d7_m, ho_m)
    # OpenCV's labelling (the core install has no SciPy): 8-connected nuclei, 4-connected cells
    n, nuc = cv2.connectedComponents((ho_m | d7_m).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    dead = np.zeros(n, bool)
    dead[nuc[d7_m]] = True
    dead[0] = False
    cells = cv2.connectedComponents(cells_m.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)[1]
    found["article"] = (nuc, cells, dead)
    if SK is not None:
        r = SK.skimage_frame(bf, ho, d7)
        found["scikit-image"] = (r["nuclei"], r["cells"], r["dead"])
    for sep in ("watershed", "voronoi"):
        r = segment_frame(bf, ho, d7, SegmentParams(separation=sep))
        found["cpu" if sep == "watershed" else "cpu · voronoi"] = (r.nuclei, r.cells, r.dead)
    rows = []
    for name, (nuclei, cells, dead) in found.items():
        sn, sc = match_instances(f.nuclei, nuclei), match_instances(f.cells, cells)
        rows.append({"implementation": name, "size": size, "nucleus_f1": sn.f1, "nucleus_matched_iou": sn.mean_iou,
                     "cell_f1": sc.f1, "cell_matched_iou": sc.mean_iou,
                     "live": int((~dead[1:]).sum()), "dead": int(dead[1:].sum()),
                     "true_live": f.n_live, "true_dead": f.n_dead})
    return rows


def real_quality(data: Path, log) -> dict:
    """`bench_quality.main` on ``data`` (its printout captured), or why it was skipped."""
    import bench_quality

    if not (data / "coelho2009_hoechst_nuclei").is_dir() or not (data / "celldetective_adcc_livedead").is_dir():
        return {"skipped": f"no real data at {data}"}
    buf = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(buf):
        path = Path(tmp) / "q.json"
        bench_quality.main(["--data", str(data), "--json", str(path)])
        res = json.loads(path.read_text())
    log("  " + "\n  ".join(buf.getvalue().strip().splitlines()))
    return {"data": str(data), **res}


# -- the record -----------------------------------------------------------------------------------

def versions(gpu_desc: str) -> dict:
    from importlib import metadata

    info = bench_frame.machine()
    for name in ("scikit-image", "scipy", "dask", "distributed", "tifffile", "cupy-cuda12x", "cupy-cuda13x",
                 "cucim-cu12", "cucim-cu13"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    with contextlib.suppress(Exception):
        import cupy

        info["cupy"] = cupy.__version__
    info["gpu"] = gpu_desc
    info["git"] = bench_frame.package_state()
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _fmt(ms):
    if ms is None:
        return "-"
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _x(r):
    return "-" if r is None else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def markdown(res: dict) -> str:
    m, s = res["machine"], res["settings"]
    sizes = s["sizes"]
    lines = [
        f"# livedead_gpu benchmark suite, {res['date']}",
        "",
        f"- **Command:** `{res['command']}`",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['platform']}; "
        f"load average at the start {m.get('load_average', '?')}",
        f"- **GPU:** {m['gpu']}",
        f"- **Software:** Python {m['python']}, NumPy {m['numpy']}, OpenCV {m['opencv']} "
        f"(threads {m['opencv_threads']}), scikit-image {m.get('scikit-image', 'not installed')}, "
        f"SciPy {m.get('scipy', '-')}, Dask {m.get('dask', '-')}, CuPy {m.get('cupy', 'not installed')}",
        f"- **Package:** git {m['git']}, `SegmentParams()` (preset {s['params']['preset']!r}, "
        f"cell threshold {s['params']['cell_threshold']!r})",
        f"- **Frames:** synthetic, 12-bit, seed {s['seed']}, the density of the default 256² frame: "
        + ", ".join(f"{f['size']}² {f['n_cells']} cells" for f in res["frames"]),
        f"- **Timing:** median of {s['repeats']} after a warm-up, implementations called in turn; "
        "`× article` = article ms / this ms, `× cpu` = cpu ms / this ms, both within this run.",
        "",
        "## Time per stage (ms)",
        "",
        "| stage | implementation | " + " | ".join(f"{n}² ms | × article | × cpu" for n in sizes) + " |",
        "|---|---|" + "---:|---:|---:|" * len(sizes),
    ]
    by = {(r["stage"], r["implementation"], r["size"]): r for r in res["timings"]}
    for stage in STAGES:
        for impl in IMPLEMENTATIONS:
            if not any((stage, impl, n) in by for n in sizes):
                continue
            label = f"{impl} ({THRESHOLD_KIND.get(impl, 'block-max')})" if stage.startswith("threshold") else impl
            cells = []
            for n in sizes:
                r = by.get((stage, impl, n))
                cells.append("- | - | -" if r is None else
                             f"{_fmt(r['median_ms'])} | {_x(r['vs_article'])} | {_x(r['vs_cpu'])}")
            lines.append(f"| {stage} | {label} | " + " | ".join(cells) + " |")
    if not any(r["implementation"].startswith("gpu") for r in res["timings"]):
        lines.append(f"| all stages | gpu | {m['gpu']} |" + " - |" * (3 * len(sizes) - 1))
    if SK_MISSING:
        lines.append(f"| all stages | scikit-image | {SK_MISSING} |" + " - |" * (3 * len(sizes) - 1))

    lines += ["", "## Peak memory of one whole frame (fresh process, MiB)", ""]
    if res["memory"] is None:
        lines.append("Not measured (--no-memory).")
    else:
        lines += ["| implementation | " + " | ".join(f"{n}² RSS growth | × input" for n in sizes)
                  + " | GPU pool (largest size) |",
                  "|---|" + "---:|---:|" * len(sizes) + "---:|"]
        mem = {(r["implementation"], r["size"]): r for r in res["memory"]}
        for impl in MEMORY_IMPLEMENTATIONS:
            if not any((impl, n) in mem for n in sizes):
                continue
            cells = []
            for n in sizes:
                r = mem.get((impl, n))
                cells.append("- | -" if r is None else f"failed: {r['error']} | -" if "error" in r else
                             f"{r['rss_growth_mib']:.{0 if r['rss_growth_mib'] >= 10 else 1}f} | "
                             f"{r['rss_vs_input']:.1f}x")
            big = mem.get((impl, sizes[-1]), {})
            pool = f"{big['gpu_pool_mib']:.0f}" if "gpu_pool_mib" in big else "-"
            lines.append(f"| {impl} | " + " | ".join(cells) + f" | {pool} |")

    lines += ["", "## Plate export: read + segment + write", ""]
    p = res["plate"]
    if p is None:
        lines.append("Not measured (--no-plate).")
    else:
        lines += [f"Synthetic Gen5 plate of {p['frames']} frames of {p['size']}², CPU backend, into an empty "
                  f"folder; {p['statistic']} of {p['repeats']} after a warm-up (`bench_dask.py`'s functions; "
                  "each Dask run's output checked byte-identical to the serial run's).", "",
                  "| run | workers | frames/s | × serial |", "|---|---:|---:|---:|"]
        for r in p["rows"]:
            if r.get("not_measured"):
                lines.append(f"| {r['run']} | - | **not measured: {r['not_measured']}** | - |")
            else:
                lines.append(f"| {r['run']} | {r['workers']} | {r['frames_per_s']:.2f} | {_x(r['vs_serial'])} |")

    lines += ["", "## Label quality", ""]
    q = res["quality"]
    lines += [f"Synthetic frame {q['synthetic'][0]['size']}² against its ground truth (object F1 at IoU >= 0.5, "
              "mean matched IoU):", "",
              "| implementation | nucleus F1 | nucleus IoU | cell F1 | cell IoU | live (truth) | dead (truth) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in q["synthetic"]:
        lines.append(f"| {r['implementation']} | {r['nucleus_f1']:.3f} | {r['nucleus_matched_iou']:.3f} | "
                     f"{r['cell_f1']:.3f} | {r['cell_matched_iou']:.3f} | {r['live']} ({r['true_live']}) | "
                     f"{r['dead']} ({r['true_dead']}) |")
    real = q["real"]
    lines.append("")
    if "skipped" in real:
        lines.append(f"Real annotated sets: skipped ({real['skipped']}).")
    else:
        lines += ["Real annotated sets (`benchmarks/bench_quality.py`): object F1 / mean matched IoU / pixel IoU.", "",
                  "| set | method | F1 | matched IoU | pixel IoU | live/dead call right |", "|---|---|---:|---:|---:|---:|"]
        for method, subsets in real["coelho"].items():
            for subset, sc in subsets.items():
                lines.append(f"| Coelho {subset} | {method} | {sc['f1']:.3f} | {sc['mean_matched_iou']:.3f} | "
                             f"{sc['pixel_iou']:.3f} | - |")
        for method, sc in real["adcc"].items():
            lines.append(f"| ADCC | {method} | {sc['f1']:.3f} | {sc['mean_matched_iou']:.3f} | "
                         f"{sc['pixel_iou']:.3f} | {sc['live_dead_correct']:.3f} |")
    lines += ["", f"Suite ran in {res['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def run_suite(sizes, repeats, backend="auto", memory=True, plate=True, quality=True, data=None, seed=0,
              quick=False, command="", log=print) -> dict:
    start = time.perf_counter()
    gpu, gpu_desc = gpu_backend(backend)
    params = SegmentParams()
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": command, "machine": versions(gpu_desc),
           "settings": {"sizes": list(sizes), "repeats": repeats, "backend": backend, "seed": seed, "quick": quick,
                        "params": params.to_dict()},
           "frames": [], "timings": []}
    for size in sizes:
        log(f"timing {size}² ...")
        rows, info = time_size(size, repeats, params, gpu, seed, log)
        res["timings"] += rows
        res["frames"].append(info)
    res["memory"] = None
    if memory:
        impls = [i for i in MEMORY_IMPLEMENTATIONS
                 if (SK is not None or i != "scikit-image")
                 and (not i.startswith("gpu") or (gpu is not None and gpu.name == "gpu"))]
        res["memory"] = []
        for size in sizes:
            res["memory"] += memory_size(size, seed, impls, log)
    res["plate"] = None
    if plate:
        cores = os.cpu_count() or 1
        if quick:
            res["plate"] = plate_throughput(min(sizes), 1, 4, [1], 1, seed, log)
        else:
            workers = sorted({1, 2, cores} & set(range(1, cores + 1))) if cores <= 4 else [1, 2, 4, cores]
            res["plate"] = plate_throughput(min(sizes), 2, 8, workers, 3, seed, log)
    res["quality"] = {"synthetic": synthetic_quality(min(sizes), seed)}
    if quick or not quality:
        res["quality"]["real"] = {"skipped": "--quick" if quick else "--no-quality"}
    else:
        try:
            res["quality"]["real"] = real_quality(Path(data) if data else HERE.parents[1] / "shared" / "data", log)
        except Exception as e:
            res["quality"]["real"] = {"skipped": f"failed: {type(e).__name__}: {e}"}
    res["seconds"] = time.perf_counter() - start
    return res


def main(argv=None, prog=None) -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                 epilog="See the docstring of benchmarks/suite.py for what is measured.")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_SIZES[0]}² frames, {QUICK_REPEATS} repeats, a 4-frame plate, no real data "
                         "(a smoke run; checks the table's shape, not speed)")
    ap.add_argument("--sizes", help="frame sides, comma-separated (default: 1024,2048,4096; 256 with --quick)")
    ap.add_argument("--repeats", type=int, help=f"timed rounds (default: {FULL_REPEATS}; {QUICK_REPEATS} with --quick)")
    ap.add_argument("--out", type=Path, default=Path("bench-out"),
                    help="folder for suite.md and suite.json (default: bench-out)")
    ap.add_argument("--backend", choices=("auto", "cpu", "gpu", "standin"), default="auto",
                    help="GPU rows: auto (when a GPU is present), cpu (none), gpu (required), standin (the GPU "
                         "code on NumPy stand-ins; times mean nothing)")
    ap.add_argument("--data", type=Path, help="real annotated sets (default: ../shared/data beside the checkout)")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurements")
    ap.add_argument("--no-plate", action="store_true", help="skip the plate export / Dask workers part")
    ap.add_argument("--no-quality", action="store_true", help="skip the real-data label quality")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no progress lines, no table on stdout (files only)")
    ap.add_argument("--memory-child", nargs=2, metavar=("NPZ", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        _memory_child(*args.memory_child)
        return 0
    if args.sizes:
        try:
            sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--sizes takes comma-separated integers, got {args.sizes!r}") from None
        if not sizes or min(sizes) < 64:
            raise ValueError(f"--sizes: each frame side must be >= 64, got {args.sizes!r}")
    else:
        sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    repeats = args.repeats if args.repeats is not None else (QUICK_REPEATS if args.quick else FULL_REPEATS)
    if repeats < 1:   # 0 had meant the default
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    if args.out.exists() and not args.out.is_dir():   # found now, not after the whole suite
        raise NotADirectoryError(f"--out {str(args.out)!r} is a file; expected a folder (new or existing)")
    command = " ".join([prog or "python benchmarks/suite.py", *(argv if argv is not None else sys.argv[1:])])

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    res = run_suite(sorted(sizes), repeats, args.backend, memory=not args.no_memory, plate=not args.no_plate,
                    quality=not args.no_quality, data=args.data, seed=args.seed, quick=args.quick,
                    command=command, log=log)
    text = markdown(res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.md").write_text(text)
    (args.out / "suite.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    if not args.quiet:
        print(text)
    log(f"wrote {args.out / 'suite.md'} and {args.out / 'suite.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
