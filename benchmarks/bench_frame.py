"""CPU benchmark of one frame: the package's stages against the article's code.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_frame.py            # 2048 x 2048, 7 repeats
    PYTHONPATH=. .venv/bin/python benchmarks/bench_frame.py --quick    # 512 x 512, 3 repeats
    PYTHONPATH=. .venv/bin/python benchmarks/bench_frame.py --json out.json

Each stage is timed for the article's version (``benchmarks/article.py``) and
ours on the same inputs in the same run: one warm-up call each, then
``--repeats`` calls alternating article / ours, and the median of each
(``time.perf_counter``). Speed-ups are ratios of those medians. Then the peak
memory of one ``segment_frame`` call: traced by ``tracemalloc`` (NumPy
allocations, OpenCV's output arrays included) and as peak RSS growth in a fresh
subprocess (which also counts OpenCV's internal buffers).

The goals are the acceptance points of the CPU backend; nothing here asserts.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import article  # noqa: E402  (benchmarks/article.py: the article's code)
from livedead_gpu import stages, synthetic  # noqa: E402
from livedead_gpu.backends import get_backend  # noqa: E402
from livedead_gpu.params import SegmentParams  # noqa: E402
from livedead_gpu.pipeline import segment_frame  # noqa: E402

G = importlib.import_module("livedead_gpu.stages.gradient")
P = SegmentParams()  # the package's defaults (offset 1.2, coarseness 16, kernel 5 as the article)
BE = get_backend("cpu")
# How the package thresholds the brightfield gradient: "noise" (a Gaussian, then a
# threshold from the noise floor) or "block-max" (the article's histogram on a
# quantised gradient). Older package versions know only the latter.
CELL_THRESHOLD = getattr(P, "cell_threshold", "block-max")
CONFIG = None  # --config TOML, passed on to the fresh memory-measuring process
MEMORY_GOAL = 12  # peak bytes of one frame / its input bytes


# -- inputs --------------------------------------------------------------------

def make_inputs(size: int, bit_depth: int, seed: int) -> dict:
    """A synthetic frame and the intermediate arrays that stage inputs need.

    The intermediates come from the package's own stages, so a stage of the
    article and its counterpart get the very same arrays.
    """
    n_cells = round(20 * (size / 256) ** 2)  # the default 256² frame's density
    f = synthetic.make_frame(shape=(size, size), n_cells=n_cells, bit_depth=bit_depth, seed=seed)
    d = {"bf": f.brightfield, "ho": f.hoechst, "d7": f.draq7, "n_cells": n_cells}
    area = stages.cell_area(d["bf"], P, BE)
    d["area"] = area.mask                                         # bool
    # The gradient image the cell-area threshold applies to, and that threshold.
    if CELL_THRESHOLD == "block-max":
        d["cell_gradient"] = stages.quantize(area.gradient, area.scale, BE)  # uint16 levels
    else:
        d["cell_gradient"] = area.gradient                        # float32
    d["cell_threshold"] = area.threshold
    d["article_gradient"] = article.SobelGradient(d["bf"])
    nuc, d["ho_mask"], d["d7_mask"], _ = stages.find_nuclei(d["ho"], d["d7"], P, BE)
    d["labels"], d["dead"] = nuc.labels, nuc.dead
    d["cells"], d["outlines"] = stages.separate_cells(d["area"], d["labels"], BE)
    d["cells_mask"] = d["cells"] > 0
    return d


# -- the stages, article and ours (asv-style: one small function each) --------

def time_threshold_article(d):
    return article.thresholdImage(d["ho"], P.offset, P.coarseness)


def time_threshold_ours(d):
    return stages.block_max_threshold(d["ho"], P.offset, P.coarseness, BE)


def time_gradient_article(d):
    return article.SobelGradient(d["bf"])


def time_gradient_ours(d):
    # What stages.cell_area computes before its threshold.
    g = G.smoothed_gradient(d["bf"], P.smoothing, BE)
    if CELL_THRESHOLD == "block-max":
        return stages.quantize(g, stages.gradient_scale(g, P.coarseness, P.gradient_levels, BE), BE)
    return g


def time_gradient_threshold_article(d):
    return article.thresholdImage(d["article_gradient"], P.offset, P.coarseness)


def time_gradient_threshold_ours(d):
    if CELL_THRESHOLD == "block-max":
        return stages.block_max_threshold(d["cell_gradient"], P.offset, P.coarseness, BE)
    return G.noise_threshold(d["bf"], d["cell_gradient"], P.coarseness, P.offset, P.smoothing,
                             P.noise_ceiling, BE)


def time_morphology_article(d):
    return article.morphImage(d["cell_gradient"], d["cell_threshold"], P.kernel_size)


def time_morphology_ours(d):
    # The tail of stages.cell_area: threshold, dilate, erode, fill holes.
    mask = BE.greater(d["cell_gradient"], d["cell_threshold"])
    mask = BE.dilate(mask, P.kernel_size, P.dilations)
    mask = BE.erode(mask, P.kernel_size, P.erosions)
    return BE.fill_holes(mask)


def time_nuclei_article(d):
    ho = article.nucleusImage(d["ho"], article.thresholdImage(d["ho"], P.offset, P.coarseness))
    d7 = article.nucleusImage(d["d7"], article.thresholdImage(d["d7"], P.offset, P.coarseness))
    return ho, d7


def time_nuclei_ours(d):
    # The whole nucleus stage as segment_frame runs it: the masks, the labelling
    # and the live/dead call, which the article leaves to segregate_cells.
    return stages.find_nuclei(d["ho"], d["d7"], P, BE)


def time_separation_article(d):
    return article.segregate_cells(d["area"], d["d7_mask"], d["ho_mask"])


def time_separation_ours(d):
    return stages.separate_cells(d["area"], d["labels"], BE)


def time_classes_article(d):
    return article.create_training_mask(d["cells_mask"], d["outlines"], d["ho_mask"], d["d7_mask"])


def time_classes_ours(d):
    return stages.class_mask(d["cells"], d["outlines"], d["labels"], d["dead"], BE)


def time_frame_article(d):
    return article.article_frame(d["bf"], d["ho"], d["d7"])


def time_frame_ours(d):
    return segment_frame(d["bf"], d["ho"], d["d7"], P)


# name, article, ours, goal (minimum speed-up; None: reported, exempt)
STAGES = [
    ("threshold (block-max)", time_threshold_article, time_threshold_ours, 30),
    ("Sobel gradient", time_gradient_article, time_gradient_ours, 5),
    ("gradient threshold", time_gradient_threshold_article, time_gradient_threshold_ours, 5),
    ("cell-area morphology + fill", time_morphology_article, time_morphology_ours, 5),
    ("nuclei (2 channels)", time_nuclei_article, time_nuclei_ours, 5),
    ("separation (watershed)", time_separation_article, time_separation_ours, None),
    ("class mask", time_classes_article, time_classes_ours, 5),
    ("whole frame", time_frame_article, time_frame_ours, 3),
]


# -- timing --------------------------------------------------------------------

def time_pair(article_fn, ours_fn, d, repeats: int):
    """Median seconds of each function: one warm-up each, then alternating calls."""
    article_fn(d)
    ours_fn(d)
    gc.collect()
    a, o = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        article_fn(d)
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours_fn(d)
        o.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(o)


# -- memory --------------------------------------------------------------------

def traced_peak(fn, *args) -> int:
    """Peak bytes allocated through Python's allocators (NumPy included) during one call."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    result = fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak - base


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _rss_child(path: str, which: str) -> None:
    """In a fresh interpreter: peak RSS growth of one frame (printed as JSON)."""
    import resource

    with np.load(path) as z:
        bf, ho, d7 = z["bf"], z["ho"], z["d7"]
    fn = (lambda *channels: segment_frame(*channels, P)) if which == "ours" else article.article_frame
    fn(bf[:256, :256], ho[:256, :256], d7[:256, :256])  # load libraries, start OpenCV's threads
    gc.collect()
    try:  # reset VmHWM to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before_rss, before_hwm = _status_kib("VmRSS"), _status_kib("VmHWM")
    before_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fn(bf, ho, d7)
    after_hwm = _status_kib("VmHWM")
    after_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    print(json.dumps({
        "hwm_reset": reset,
        "rss_before_kib": before_rss,
        "hwm_after_kib": after_hwm,
        "growth_kib": after_hwm - (before_rss if reset else before_hwm),
        # ru_maxrss is the lifetime peak and cannot be reset; it measures the call
        # only when the call raised it (else None).
        "ru_maxrss_before_kib": before_maxrss,
        "ru_maxrss_after_kib": after_maxrss,
        "ru_maxrss_growth_kib": after_maxrss - before_rss if after_maxrss > before_maxrss else None,
    }))


def rss_peak(d, which: str) -> dict:
    """Run `_rss_child` in a fresh subprocess on the frame's three channels."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frame.npz")
        np.savez(path, bf=d["bf"], ho=d["ho"], d7=d["d7"])
        # Through a shell that forks (the command is not its last): a process exec'd
        # straight from this one would inherit this process's peak RSS as its ru_maxrss.
        cmd = [sys.executable, __file__, "--rss-child", path, "--rss-which", which]
        if CONFIG:
            cmd += ["--config", CONFIG]
        out = subprocess.run(
            ["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd],
            check=True, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])},
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- report --------------------------------------------------------------------

def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
    }


def package_state() -> str:
    """The package's git commit, and whether its files differ from it."""
    def git(*a):
        r = subprocess.run(["git", "-C", str(HERE.parent), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "livedead_gpu")
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def _kib(value):
    return None if value is None else value * 1024


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.2f}" if s < 0.1 else f"{s * 1e3:.1f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=None, help="frame side in px (2048; 512 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per function (7; 3 with --quick)")
    ap.add_argument("--bit-depth", type=int, default=12, choices=(8, 12, 16))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a small frame and few repeats (a smoke run)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--config", metavar="TOML", help="parameters for ours (default: the package's defaults)")
    ap.add_argument("--rss-child", metavar="NPZ", help=argparse.SUPPRESS)
    ap.add_argument("--rss-which", default="ours", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.config:
        global P, CELL_THRESHOLD, CONFIG
        P, CONFIG = SegmentParams.from_toml(args.config), str(Path(args.config).resolve())
        CELL_THRESHOLD = P.cell_threshold
    if args.rss_child:
        _rss_child(args.rss_child, args.rss_which)
        return
    size = args.size or (512 if args.quick else 2048)
    repeats = args.repeats or (3 if args.quick else 7)

    info = machine()
    info["package"] = package_state()
    info["params"] = P.to_dict() if hasattr(P, "to_dict") else repr(P)
    print(f"# livedead_gpu CPU benchmark, {time.strftime('%Y-%m-%d')}")
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable), {info['platform']}")
    print(f"Python {info['python']}, NumPy {info['numpy']}, OpenCV {info['opencv']} "
          f"(cv2.getNumThreads() = {info['opencv_threads']})")
    print(f"livedead_gpu: git {info['package']}; cell threshold {CELL_THRESHOLD!r}, smoothing {P.smoothing}, "
          f"nucleus threshold {P.nucleus_threshold!r}, split {P.split_nuclei}, dead call {P.dead_call!r}"
          + (f" (--config {CONFIG})" if CONFIG else ""))
    t = time.perf_counter()
    d = make_inputs(size, args.bit_depth, args.seed)
    input_bytes = d["bf"].nbytes + d["ho"].nbytes + d["d7"].nbytes
    print(f"frame: {size} x {size}, 3 channels uint16 ({args.bit_depth}-bit), {d['n_cells']} cells asked, "
          f"{int(d['labels'].max())} nuclei found; input {input_bytes / 2**20:.0f} MiB; "
          f"median of {repeats} after 1 warm-up (inputs built in {time.perf_counter() - t:.1f} s)")
    print(f"sanity: block-max threshold of Hoechst: article {time_threshold_article(d)}, "
          f"ours {time_threshold_ours(d)}; cell-area share after morphology + fill: "
          f"article {time_morphology_article(d).mean():.3f}, ours {time_morphology_ours(d).mean():.3f}")
    print()

    rows = []
    print("| stage | article ms | ours ms | speed-up | goal | met |")
    print("|---|---:|---:|---:|---:|:---:|")
    for name, article_fn, ours_fn, goal in STAGES:
        a, o = time_pair(article_fn, ours_fn, d, repeats)
        ratio = a / o
        met = None if goal is None else ratio >= goal
        rows.append({"stage": name, "article_s": a, "ours_s": o, "speedup": ratio, "goal": goal, "met": met})
        goal_s = "exempt" if goal is None else f">= {goal}x"
        met_s = "-" if met is None else ("yes" if met else "**no**")
        print(f"| {name} | {fmt_ms(a)} | {fmt_ms(o)} | {ratio:.1f}x | {goal_s} | {met_s} |", flush=True)

    memory = {}
    if not args.no_memory:
        limit = MEMORY_GOAL * input_bytes
        memory = {
            "input_bytes": input_bytes,
            "limit_bytes": limit,
            "traced_peak_ours": traced_peak(time_frame_ours, d),
            "traced_peak_article": traced_peak(time_frame_article, d),
            "rss_ours": rss_peak(d, "ours"),
            "rss_article": rss_peak(d, "article"),
        }
        mib = 2**20
        print()
        print(f"peak memory of one frame (input {input_bytes / mib:.0f} MiB, goal <= {MEMORY_GOAL}x = "
              f"{limit / mib:.0f} MiB):")
        print("| measure | article MiB | ours MiB | ours / input | met |")
        print("|---|---:|---:|---:|:---:|")
        for label, a, o in (
            ("tracemalloc peak (NumPy + OpenCV outputs)",
             memory["traced_peak_article"], memory["traced_peak_ours"]),
            ("peak RSS growth, fresh process (VmHWM)",
             memory["rss_article"]["growth_kib"] * 1024, memory["rss_ours"]["growth_kib"] * 1024),
            ("peak RSS growth, fresh process (ru_maxrss)",
             _kib(memory["rss_article"]["ru_maxrss_growth_kib"]),
             _kib(memory["rss_ours"]["ru_maxrss_growth_kib"])),
        ):
            a_s = "n/a" if a is None else f"{a / mib:.0f}"
            if o is None:  # the call did not raise the process's lifetime peak
                print(f"| {label} | {a_s} | n/a | n/a | - |")
                continue
            print(f"| {label} | {a_s} | {o / mib:.0f} | {o / input_bytes:.1f}x | "
                  f"{'yes' if o <= limit else '**no**'} |")

    if args.json:
        out = {"date": time.strftime("%Y-%m-%d"), "machine": info, "size": size, "repeats": repeats,
               "bit_depth": args.bit_depth, "seed": args.seed, "n_cells": d["n_cells"],
               "stages": rows, "memory": memory}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
