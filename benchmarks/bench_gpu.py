"""CPU backend vs GPU backend on one frame: per stage, resident and end to end.

Run from the repository root on a machine with a CUDA device and the GPU extras::

    python benchmarks/bench_gpu.py                      # 2048 x 2048, 20 repeats
    python benchmarks/bench_gpu.py --json gpu.json

``--standin`` runs the same code with the NumPy/SciPy/scikit-image stand-ins in
place of CuPy/cuCIM (no GPU needed; a smoke test, its times mean nothing).

- *resident*: the frame already on the device, results left there
  (`livedead_gpu.pipeline.segment_arrays`), timed with a device synchronisation
  before and after each call;
- *end to end*: host arrays in, host results out (`segment_frame`), so the
  transfers and, with "watershed", the CPU fallback's round trip are included.

Medians after a warm-up; ratios are of medians measured in this run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livedead_gpu import SegmentParams, get_backend, segment_frame, stages, synthetic  # noqa: E402
from livedead_gpu.pipeline import segment_arrays  # noqa: E402


def timed(fn, be, repeats):
    fn()
    be.synchronize()
    times = []
    for _ in range(repeats):
        be.synchronize()
        start = time.perf_counter()
        fn()
        be.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def stage_calls(be, frame, params):
    """The stages as zero-argument calls on device-resident inputs."""
    bf, ho, d7 = (be.to_device(c) for c in (frame.brightfield, frame.hoechst, frame.draq7))
    area = stages.cell_area(bf, params, be)
    ho_mask, _ = stages.nucleus_mask(ho, params, be)
    d7_mask, _ = stages.nucleus_mask(d7, params, be)
    nuc = stages.nuclei(ho_mask, d7_mask, be)
    cells, outlines = stages.separate_cells(area.mask, nuc.labels, be)
    return {
        "block-max threshold": lambda: stages.block_max_threshold(ho, params.offset, params.coarseness, be),
        "gradient (smoothed Sobel)": lambda: stages.smoothed_gradient(bf, params.smoothing, be),
        "cell area": lambda: stages.cell_area(bf, params, be),
        "nuclei (2 channels)": lambda: stages.nuclei(
            stages.nucleus_mask(ho, params, be)[0], stages.nucleus_mask(d7, params, be)[0], be
        ),
        "separation: watershed (CPU fallback)": lambda: stages.separate_cells(area.mask, nuc.labels, be),
        "separation: voronoi": lambda: stages.separate_cells(area.mask, nuc.labels, be, "voronoi"),
        "class mask": lambda: stages.class_mask(cells, outlines, nuc.labels, nuc.dead, be),
        "frame resident, watershed": lambda: segment_arrays(bf, ho, d7, params, be),
        "frame resident, voronoi": lambda: segment_arrays(
            bf, ho, d7, SegmentParams(**{**params.to_dict(), "separation": "voronoi"}), be
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--standin", action="store_true", help="NumPy/SciPy stand-ins instead of CuPy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    if args.standin:
        import scipy.ndimage
        import skimage

        from livedead_gpu.backends.gpu import ArrayBackend

        gpu = ArrayBackend(np, scipy.ndimage, skimage, name="standin")
        device = "NumPy stand-in (no GPU)"
    else:
        import cupy

        gpu = get_backend("gpu")
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        device = f"{props['name'].decode()}, CuPy {cupy.__version__}"
    cpu = get_backend("cpu")
    n_cells = max(4, int(20 * (args.size / 256) ** 2))
    frame = synthetic.make_frame(shape=(args.size, args.size), n_cells=n_cells, bit_depth=12, seed=0)
    params = SegmentParams()

    rows = []
    cpu_calls, gpu_calls = stage_calls(cpu, frame, params), stage_calls(gpu, frame, params)
    for name in cpu_calls:
        c, g = timed(cpu_calls[name], cpu, args.repeats), timed(gpu_calls[name], gpu, args.repeats)
        rows.append({"stage": name, "cpu_ms": c, "gpu_ms": g, "speedup": c / g})
    channels = (frame.brightfield, frame.hoechst, frame.draq7)
    for sep in ("watershed", "voronoi"):
        p = SegmentParams(separation=sep)
        c = timed(lambda: segment_frame(*channels, p, backend=cpu), cpu, args.repeats)
        g = timed(lambda: segment_frame(*channels, p, backend=gpu), gpu, args.repeats)
        rows.append({"stage": f"frame end to end, {sep}", "cpu_ms": c, "gpu_ms": g, "speedup": c / g,
                     "gpu_frames_per_s": 1e3 / g})

    print(f"# CPU vs GPU backend, {time.strftime('%Y-%m-%d')}")
    print(f"GPU: {device}; CPU: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"frame {args.size} x {args.size}, 3 x uint16, {n_cells} cells; median of {args.repeats} after a warm-up\n")
    print("| stage | CPU ms | GPU ms | speed-up |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stage']} | {r['cpu_ms']:.2f} | {r['gpu_ms']:.3f} | {r['speedup']:.1f}x |")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "size": args.size, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
