"""The ``livedead-gpu`` command line."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

from .io import atomic_write_text, frame_stem, write_tiff
from .params import SegmentParams
from .pipeline import bleed_readings, plate_value, segment_frame

log = logging.getLogger("livedead_gpu")

SUMMARY_COLUMNS = ["well", "site", "time", "n_live", "n_dead", "dead_fraction", "true_live", "true_dead", "classes_file"]


def _params(path) -> SegmentParams:
    return SegmentParams.from_toml(path) if path else SegmentParams()


def demo(out: Path, backend: str = "cpu", config=None, size: int = 256, times: int = 4, seed: int = 0) -> list[dict]:
    """Segment a small synthetic plate; write masks, a summary CSV and the parameters, and the
    plate's images (``plate/``, Gen5 files for ``livedead-gpu segment``).

    Returns the summary rows.
    """
    from . import qc, readout, synthetic

    params = _params(config)
    # 20 cells in 256² (the generator's default density), fewer in a smaller frame: a fixed 20
    # did not fit a 128² frame and warned of a crowded frame the user did not ask for
    n_cells = max(1, min(20, round(20 * (size / 256) ** 2)))
    plate = synthetic.make_plate(wells=("A1", "A2", "B1"), sites=1, n_times=times, shape=(size, size),
                                 n_cells=n_cells, seed=seed)
    if params.dead_call == "ratio" and params.bleed == "auto":  # one for the plate, as `segment` measures it
        bleed = plate_value(bleed_readings(f.hoechst, f.draq7, params, backend)
                            for (_, _, t), f in plate.items() if t == 0)
        params = dataclasses.replace(params, bleed=bleed)
    # An earlier demo's files in its own folders (a run with more time points or another size)
    # would join this plate when segmented, and its masks outlive the summary that lists them.
    for old in [*(out / "plate").glob("*_02_[123]_*_*_[0-9][0-9][0-9].tif"),
                *(out / "masks").glob("*_s*_t[0-9]*_c*.tif")]:
        old.unlink()
    synthetic.write_plate(plate, out / "plate")
    rows, readouts = [], []
    for (well, site, t), frame in sorted(plate.items()):
        r = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params, backend=backend)
        readouts.append(readout.frame_readout(r, well, site, t))
        shown = (well, site, t, frame, r)  # the QC panel shows the last frame: the most dead well, last time
        stem = frame_stem(well, site, t)  # as the training set names its files
        write_tiff(out / "masks" / f"{stem}_classes.tif", r.classes)
        write_tiff(out / "masks" / f"{stem}_cells.tif", r.cells)
        n = r.n_live + r.n_dead
        rows.append({
            "well": well, "site": site, "time": t, "n_live": r.n_live, "n_dead": r.n_dead,
            "dead_fraction": round(r.n_dead / n, 4) if n else "",  # no nuclei: no fraction
            "true_live": frame.n_live, "true_dead": frame.n_dead,
            "classes_file": f"masks/{stem}_classes.tif",
        })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buf.getvalue())
    atomic_write_text(out / "params.toml", params.to_toml())
    readout.write_readout(readouts, out / "readout", title="Kill curves: synthetic demo plate")
    well, site, t, frame, r = shown
    qc.plot_result(frame.brightfield, frame.hoechst, frame.draq7, r, out / "qc" / f"{frame_stem(well, site, t)}.png",
                   title=f"synthetic demo: {well} site {site} t={t} (truth {frame.n_live} live, {frame.n_dead} dead)")
    return rows


def _cmd_demo(args) -> int:
    start = time.perf_counter()
    for flag, value, low in (("--size", args.size, 32), ("--times", args.times, 1), ("--seed", args.seed, 0)):
        if value < low:
            raise ValueError(f"{flag} must be an int >= {low}, got {value}")
    if args.out.exists() and not args.out.is_dir():
        raise NotADirectoryError(f"--out {str(args.out)!r} is a file; expected a folder (new or existing)")
    _check_writable(args.out, "--out")   # now, not after the whole plate is segmented
    rows = demo(args.out, args.backend, args.config, args.size, args.times, args.seed)
    _say(args, f"{'well':<5}{'time':>5}{'live':>6}{'dead':>6}  (truth live/dead)")
    for r in rows:
        _say(args, f"{r['well']:<5}{r['time']:>5}{r['n_live']:>6}{r['n_dead']:>6}  ({r['true_live']}/{r['true_dead']})")
    _say(args, f"{len(rows)} frames in {time.perf_counter() - start:.2f} s -> {args.out}/ (masks/, summary.csv, params.toml, "
          "readout/ with wells.csv and kill_curves.png, qc/ with a four-panel picture, plate/ with the images: "
          f"`livedead-gpu segment {args.out / 'plate'} -o TRAINING_SET` makes a training set of them)")
    return 0


def _cmd_segment(args) -> int:
    from .distributed import connect
    from .export import export_plate

    start = time.perf_counter()
    if args.patch_size is not None and args.patch_size < 8:
        raise ValueError(f"--patch-size must be an int >= 8, got {args.patch_size}")
    if args.min_foreground is not None and args.patch_size is None:
        raise ValueError(f"--min-foreground {args.min_foreground:g} is a patch's share; it needs --patch-size")
    if args.opencv_threads is not None and args.opencv_threads < 1:
        raise ValueError(f"--opencv-threads must be an int >= 1, got {args.opencv_threads}")
    if args.threads_per_worker < 1:
        raise ValueError(f"--threads-per-worker must be an int >= 1, got {args.threads_per_worker}")
    if not (math.isfinite(args.scheduler_timeout) and args.scheduler_timeout > 0):
        raise ValueError(f"--scheduler-timeout must be a number of seconds > 0, got {args.scheduler_timeout}")
    min_foreground = 0.05 if args.min_foreground is None else args.min_foreground
    gpus = args.gpus if args.gpus in (None, "auto") else _positive_int(args.gpus, "--gpus")
    backend = "gpu" if gpus is not None and args.backend == "cpu" else args.backend
    with connect(args.scheduler, workers=args.workers, gpus=gpus, threads_per_worker=args.threads_per_worker,
                 memory_limit=args.memory_limit, timeout=args.scheduler_timeout) as scheduler:
        s = export_plate(
            args.plate, args.out, params=_params(args.config), backend=backend, weights=args.weights,
            patches=(args.patch_size, min_foreground) if args.patch_size is not None else None,
            split=tuple(args.split), seed=args.seed, on_error=args.on_error, progress=_progress(args), resume=args.resume,
            layout=args.layout, pattern=args.pattern, channel_map=args.channel_map, scheduler=scheduler,
            opencv_threads=args.opencv_threads, z=args.z)
    _say(args, f"{s.frames} frames: {len(s.written)} written, {len(s.resumed)} done before, "
               f"{len(s.failed)} skipped for errors in {time.perf_counter() - start:.2f} s -> {s.manifest}")
    if s.bleed is not None:
        _say(args, f"Hoechst bleed into Draq7: {s.bleed:.3f} (bleed = \"auto\": measured on the nuclei of the series' "
                   "first time points, taken off every frame)")
    for key, msg in s.failed:
        print(f"skipped {key.well} s{key.site} t{key.time}: {msg}", file=sys.stderr)
    if s.failed and not s.written and not s.resumed:
        # every frame skipped: a training set of nothing is no success
        print(f"livedead-gpu: error: all {len(s.failed)} frames were skipped for errors (above); nothing to train on",
              file=sys.stderr)
        return 1
    return 0


def _positive_int(text, name):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be 'auto' or an int >= 1, got {text!r}")
    return value


def _say(args, text: str) -> None:
    """Print a result line unless --quiet."""
    if not getattr(args, "quiet", False):
        print(text)


def _check_writable(path, flag):
    """Refuse a place nothing can be written to, creating nothing: its nearest existing folder decides."""
    here = Path(path).absolute()
    while not here.exists():
        here = here.parent
    if not here.is_dir() or not os.access(here, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {str(path)!r}: cannot write in {str(here)!r}")


def _check_to(to):
    if to is not None and to.exists() and not to.is_dir():
        raise NotADirectoryError(f"--to {str(to)!r} is a file; expected a folder (new or existing)")


def _cmd_readout(args) -> int:
    from . import readout

    _check_to(args.to)
    if args.out.name == "manifest.csv" and args.out.is_file():  # the manifest named, not its folder
        args.out = args.out.parent
    if args.out.is_file():
        raise NotADirectoryError(f"{str(args.out)!r} is a file; expected a training-set folder (or its manifest.csv)")
    if not args.out.is_dir():
        raise FileNotFoundError(f"training-set folder not found: {args.out}")
    frames = readout.manifest_readout(args.out)
    paths = readout.write_readout(frames, (args.to or args.out) / "readout",
                                  title=f"Kill curves: {args.out.resolve().name}")
    wells = readout.well_readout(frames)
    last = {}
    for r in wells:
        last[r["well"]] = r
    _say(args, f"{'well':<6}{'time':>6}{'live':>7}{'dead':>7}{'dead %':>8}  (last time point)")
    for r in last.values():
        pct = "-" if r["dead_fraction"] != r["dead_fraction"] else f"{100 * r['dead_fraction']:.1f}"
        _say(args, f"{r['well']:<6}{r['time']:>6}{r['n_live']:>7}{r['n_dead']:>7}{pct:>8}")
    _say(args, "wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_qc(args) -> int:
    from . import qc

    if args.frames < 0:
        raise ValueError(f"--frames must be >= 0, got {args.frames}")
    _check_to(args.to)
    start = time.perf_counter()
    res = qc.qc_training_set(args.out, args.to, n_frames=args.frames, gifs=not args.no_gifs, log=log.info)
    _say(args, f"{len(res['panels'])} QC panels, {len(res['gifs'])} GIFs, readout in "
               f"{time.perf_counter() - start:.2f} s -> {res['report']}")
    return 0


def _versions() -> dict:
    from importlib import metadata

    import numpy

    out = {"python": sys.version.split()[0], "numpy": numpy.__version__}
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:
        out["opencv"] = "not installed"
    for name in ("tifffile", "dask", "matplotlib", "cupy", "cupy-cuda12x", "cupy-cuda13x", "cucim",
                 "cucim-cu12", "cucim-cu13"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in ("tifffile", "dask", "matplotlib"):
                out[name] = "not installed"
    return out


def _gpus() -> tuple[list[str], str]:
    """(device descriptions, why none) as CuPy sees them."""
    try:
        import cupy
    except ImportError:
        from .backends.gpu import INSTALL

        return [], f"CuPy not installed ({INSTALL})"
    except Exception as e:  # a broken CUDA install can raise anything on import
        return [], f"CuPy does not import: {type(e).__name__}: {e}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return [], f"CuPy sees no CUDA device ({type(e).__name__})"
    gpus = []
    for i in range(n):
        try:
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            gpus.append(f"{i}: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB, "
                        f"compute capability {props['major']}.{props['minor']}")
        except Exception as e:
            gpus.append(f"{i}: (properties unreadable: {type(e).__name__})")
    return gpus, "" if gpus else "CuPy sees no CUDA device"


def _plate_options(parser):
    """How PLATE is read: the options `segment` and `info PLATE` share."""
    parser.add_argument("--layout", choices=("auto", "gen5", "imagexpress", "stack"), default="auto")
    parser.add_argument("--pattern", help="regex with named groups well, channel[, site, time, z] matched in "
                        "each file's path relative to PLATE")
    parser.add_argument("--channel-map", nargs="+", metavar="NAME=ROLE",
                        help="channel name -> brightfield|hoechst|draq7|ignore (on top of the defaults)")
    parser.add_argument("--z", type=int, metavar="N", help="the focal plane of plates imaged in several: the "
                        "number in the file names (ZStep_N/, ...ZN_...), or the index along a stack's Z axis from 0")


def _cmd_info(args) -> int:
    from . import __version__

    if args.plate is not None:
        return _plate_info(args)
    print(f"livedead-gpu {__version__}")
    for name, version in _versions().items():
        print(f"  {name:<13}{version}")
    gpus, why = _gpus()
    print("backends: cpu" + (", gpu" if gpus else f" (gpu: {why})"))
    print("GPUs: " + ("none" if not gpus else ""))
    for g in gpus:
        print(f"  {g}")
    return 0


def _plate_info(args) -> int:
    """What `segment` would read of PLATE: frames, channels, the first frame's pixels, problems.
    Exit status 1 when some frames cannot be read as found."""
    from .io import open_plate

    plate = open_plate(args.plate, layout=args.layout, pattern=args.pattern, channel_map=args.channel_map, z=args.z)
    keys = plate.keys()
    positions = sorted({(k.well, k.site) for k in keys})
    times = sorted({k.time for k in keys})
    wells = plate.wells
    print(f"{plate.root} ({plate.layout}): {len(keys)} frames = {len(positions)} positions in {len(wells)} wells "
          f"({', '.join(wells[:8])}{', ...' * (len(wells) > 8)}) x {len(times)} time points "
          f"({times[0]}..{times[-1]})")
    good = [k for k in keys if k not in plate.problems]
    if good:
        k = good[0]
        frame = plate.read(k)   # one frame: its size, type and pixel size, as every frame is read
        size = f"{frame.pixel_size:g} µm/px" if frame.pixel_size else "pixel size not in the files"
        print(f"first frame {k.well} site {k.site} time {k.time}: {frame.brightfield.shape[1]} x "
              f"{frame.brightfield.shape[0]} px, {frame.brightfield.dtype}, {size}")
        for role in ("brightfield", "hoechst", "draq7"):
            print(f"  {role:<12}{frame.channel_names[role]!r:<20}{frame.sources[role]}")
    if plate.ignored:
        print(f"{len(plate.ignored)} TIFF file(s) match no {plate.layout} name and are not read, e.g. "
              f"{plate.ignored[0]}")
    if not plate.problems:
        print("every frame can be read")
        return 0
    print(f"{len(plate.problems)} frame(s) cannot be read as found (segment stops on them; --on-error skip "
          "leaves them out):")
    for k in sorted(plate.problems)[:5]:
        print(f"  {plate.problems[k]}")
    if len(plate.problems) > 5:
        print(f"  ... and {len(plate.problems) - 5} more")
    return 1


def _cmd_evaluate(args) -> int:
    import json

    from .evaluate import evaluate_pairs, find_pairs

    if not 0 < args.iou <= 1:
        raise ValueError(f"--iou must be in (0, 1], got {args.iou}")
    if args.json is not None and args.json.is_dir():  # found now, not after every image is segmented
        raise IsADirectoryError(f"--json {str(args.json)!r} is a folder; expected a file name")
    if args.json is not None:
        _check_writable(args.json.parent, "--json")
    if args.config:
        params = SegmentParams.from_toml(args.config)
        if args.preset:
            raise ValueError("give --config or --preset, not both (a TOML file may say preset = ...)")
    else:
        params = SegmentParams.from_preset(args.preset or "default")
    extra = {k: getattr(args, k) for k in ("pixel_size", "nucleus_diameter", "nucleus_diameter_px")
             if getattr(args, k) is not None}
    if extra:
        given = params.to_dict()
        # a diameter on the command line replaces the file's, in whichever unit
        for flag, other in (("nucleus_diameter", "nucleus_diameter_px"), ("nucleus_diameter_px", "nucleus_diameter")):
            if flag in extra and other not in extra:
                given[other] = None
        params = SegmentParams.from_dict({**given, **extra})
    channel, dead = (int(c) if c is not None and c.lstrip("-").isdigit() else c
                     for c in (args.channel, args.dead_channel))
    if dead is not None and dead == channel:
        raise ValueError(f"--dead-channel {args.dead_channel!r} is the nuclear stain's --channel too; expected "
                         "the dead-nucleus stain's channel (Draq7, PI)")
    scores = evaluate_pairs(find_pairs(args.images, args.labels), params, channel, args.iou, args.backend,
                            dead, args.reference_ratio)
    if not args.quiet:
        print(f"{'image':<28}{'drawn':>6}{'found':>6}{'F1':>8}{'mIoU':>7}{'pxIoU':>7}"
              + (f"{'dead':>6}{'calls right':>13}" if dead is not None else ""))
        for name, s in scores.per_image.items():
            print(f"{name:<28}{s['tp'] + s['fn']:>6}{s['tp'] + s['fp']:>6}{s['f1']:>8.3f}"
                  f"{s['mean_matched_iou']:>7.3f}{s['pixel_iou']:>7.3f}"
                  + (f"{s.get('drawn_dead', 0):>6}{s.get('calls_right', 0):>7} of {s.get('calls', 0):<3}"
                     if dead is not None else ""))
    total = scores.as_dict()
    _say(args, f"{scores.images} images, {total['tp'] + total['fn']} drawn, {total['tp'] + total['fp']} found: "
               f"object F1 {total['f1']:.3f} at IoU >= {args.iou} (precision {total['precision']:.3f}, recall "
               f"{total['recall']:.3f}), mean matched IoU {total['mean_matched_iou']:.3f}, pixel IoU "
               f"{total['pixel_iou']:.3f}; preset {params.preset!r}")
    _say(args, "F1 at IoU " + " / ".join(f"{t:g}" for t in (0.5, 0.75, 0.9)) + ": "
               + " / ".join(f"{scores.f1_at(t):.3f}" for t in (0.5, 0.75, 0.9))
               + f"; mean AP over IoU 0.5:0.95 (the DSB 2018 score, of the pooled counts) {scores.mean_ap:.3f}")
    _say(args, f"unmatched drawn: {total['merged']} merged with others, {total['split']} split, "
               f"{total['missed']} missed, {total['outlined']} outlined poorly; unmatched found: "
               f"{total['extra']} over no drawn object")
    if scores.calls:
        _say(args, f"live/dead: {scores.calls_right} of {scores.calls} drawn nuclei called as the reference calls "
                   f"them ({scores.live_dead_right:.3f}; {scores.drawn_dead} dead by mean dead stain > "
                   f"{args.reference_ratio:g} x its median outside the drawn nuclei)")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"total": total, "per_image": scores.per_image, "iou_threshold": args.iou,
             "params": params.to_dict()}, indent=1, ensure_ascii=False))
    return 0


def _find_suite() -> Path:
    """benchmarks/suite.py of a source checkout: beside the package, else under the current directory."""
    from . import __file__ as package_init

    beside = Path(package_init).resolve().parents[1] / "benchmarks" / "suite.py"
    here = Path.cwd() / "benchmarks" / "suite.py"
    for path in (beside, here):
        if path.is_file():
            return path
    raise FileNotFoundError(f"bench needs a source checkout: benchmarks/suite.py is neither beside the package "
                            f"({beside.parent}) nor in the current directory ({here.parent}); run it from a clone "
                            "of the repository")


def _cmd_bench(args) -> int:
    import importlib.util

    path = _find_suite()
    spec = importlib.util.spec_from_file_location("livedead_benchmark_suite", path)
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    # The suite's own parser reads the options (one definition of them, in benchmarks/suite.py).
    return suite.main(args.suite_args + ["--quiet"] * bool(args.quiet), prog="livedead-gpu bench")


def _progress(args) -> bool:
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty() and not args.quiet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livedead-gpu", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="log progress")
    talk.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="segment a small synthetic plate end to end")
    d.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    d.add_argument("--backend", choices=("cpu", "auto", "gpu"), default="cpu")
    d.add_argument("--config", type=Path, help="parameters as TOML")
    d.add_argument("--size", type=int, default=256, help="frame side in pixels (default: 256)")
    d.add_argument("--times", type=int, default=4, help="time points per well (default: 4)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)
    g = sub.add_parser(
        "segment", help="segment a plate folder or stack into a U-Net training set (rerun = resume)",
        description="Segment every frame of a plate and write a U-Net training set. A rerun into the "
                    "same OUT resumes: frames done with the same parameters are skipped.")
    g.add_argument("plate", type=Path, help="plate folder (Gen5/Cytation, ImageXpress, stacks) or one stack file")
    g.add_argument("-o", "--out", type=Path, required=True, help="training-set folder")
    g.add_argument("--backend", choices=("cpu", "auto", "gpu"), default="cpu")
    g.add_argument("--config", type=Path, help="parameters as TOML")
    _plate_options(g)
    g.add_argument("--weights", action="store_true", help="also write U-Net border weight maps")
    g.add_argument("--patch-size", type=int, metavar="N", help="also write N x N patches")
    g.add_argument("--min-foreground", type=float, metavar="F",
                   help="least non-background share of a patch (default: 0.05; needs --patch-size)")
    g.add_argument("--split", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of wells per split (default: 0.7 0.15 0.15)")
    g.add_argument("--seed", type=int, default=0, help="seed of the well split (default: 0)")
    g.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="stop at an unreadable frame (raise) or list it in errors.csv and go on (skip)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="keep frames already written with the same parameters (default); --no-resume redoes all")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: when stderr is a terminal and not --quiet)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the frames on Dask: a scheduler address (tcp://HOST:8786) of a running cluster, "
                        "or threads | processes | local (a local cluster of --workers processes)")
    g.add_argument("--scheduler-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for --scheduler ADDRESS to answer (default: 10)")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes of a local Dask cluster "
                   "(alone: starts one), or of --scheduler threads|processes")
    g.add_argument("--gpus", metavar="auto|N", help="a local dask-cuda cluster, one worker per GPU (each pinned to "
                   "its device; --backend gpu implied)")
    g.add_argument("--threads-per-worker", type=int, default=1, metavar="N",
                   help="threads of each local worker (default: 1)")
    g.add_argument("--memory-limit", default="auto", help="memory limit of each local worker (default: auto)")
    g.add_argument("--opencv-threads", type=int, metavar="N",
                   help="OpenCV threads in each Dask task (1: the cores go to the workers)")
    g.set_defaults(func=_cmd_segment)
    r = sub.add_parser(
        "readout", help="recompute the live/dead readout and kill curves from a training set's manifest.csv",
        description="Per-frame and per-well (sites summed) live/dead counts, dead fraction and cell-area "
                    "fraction as CSV, kill curves and a plate map as PNG, into OUT/readout/.")
    r.add_argument("out", type=Path, metavar="OUT", help="training-set folder (holds manifest.csv)")
    r.add_argument("--to", type=Path, metavar="DIR", help="write into DIR/readout/ instead of OUT/readout/")
    r.set_defaults(func=_cmd_readout)
    q = sub.add_parser(
        "qc", help="QC pictures and an HTML report of a training set",
        description="Four-panel pictures of some frames (composite, Hoechst + Draq7, Sobel magnitude, "
                    "classes), a GIF per well over time, the readout and OUT/report.html linking them.")
    q.add_argument("out", type=Path, metavar="OUT", help="training-set folder (holds manifest.csv)")
    q.add_argument("--frames", type=int, default=8, metavar="N",
                   help="four-panel pictures to draw, spread over the wells (default: 8)")
    q.add_argument("--no-gifs", action="store_true", help="skip the per-well GIFs")
    q.add_argument("--to", type=Path, metavar="DIR", help="write into DIR instead of OUT")
    q.set_defaults(func=_cmd_qc)
    i = sub.add_parser("info", help="versions, backends available and GPUs seen; with PLATE, what segment "
                                    "would read of it",
                       description="Without PLATE: versions, backends and GPUs. With PLATE: its frames (wells, "
                                   "sites, time points), which channel plays which role, the first frame's size, "
                                   "type and pixel size, and the frames that cannot be read as found (exit "
                                   "status 1), reading one frame only.")
    i.add_argument("plate", type=Path, nargs="?", help="plate folder or stack file, opened as segment opens it")
    _plate_options(i)
    i.set_defaults(func=_cmd_info)
    e = sub.add_parser(
        "evaluate", help="nucleus segmentation quality against hand-drawn instance labels",
        description="Segment the nuclei of every image in IMAGES (the nucleus stage alone) and score them "
                    "against the instance labels in LABELS (same name, or name + _labelled/_labels/_mask...): "
                    "object F1 at IoU >= 0.5, mean matched IoU, pixel IoU, pooled over the images.")
    e.add_argument("images", type=Path, help="folder of nuclear-stain images (TIFF, PNG, ...)")
    e.add_argument("labels", type=Path, help="folder of instance label images (0 background): ids, palette "
                                             "PNGs or colour-coded pictures on black")
    e.add_argument("--preset", choices=("default", "measured", "article"), help="parameter preset (default: default)")
    e.add_argument("--config", type=Path, help="parameters as TOML")
    e.add_argument("--channel", help="channel index, or name in the image's <stem>.json \"channels\" list")
    e.add_argument("--dead-channel", help="the dead-nucleus stain's channel (Draq7, PI; index or name) in the same "
                                          "files: also score each drawn nucleus' live/dead call")
    e.add_argument("--reference-ratio", type=float, default=3.0,
                   help="with --dead-channel, the reference calls a drawn nucleus dead when its mean dead stain "
                        "exceeds this times the stain's median outside the drawn nuclei (default: 3)")
    e.add_argument("--pixel-size", type=float, help="µm per pixel")
    e.add_argument("--nucleus-diameter", type=float, help="typical nucleus diameter in µm (needs --pixel-size)")
    e.add_argument("--nucleus-diameter-px", type=float, help="typical nucleus diameter in pixels")
    e.add_argument("--iou", type=float, default=0.5, help="IoU a match needs (default: 0.5)")
    e.add_argument("--backend", choices=("cpu", "auto", "gpu"), default="cpu")
    e.add_argument("--json", type=Path, help="also write the scores and parameters as JSON")
    e.set_defaults(func=_cmd_evaluate)
    b = sub.add_parser(
        "bench", add_help=False, help="the benchmark suite: article vs scikit-image vs CPU vs GPU, one table (needs a source checkout)",
        description="Time every stage and the whole frame for the article's code, a scikit-image pipeline, the "
                    "CPU and (when present) GPU backends, watershed vs voronoi; peak memory; plate frames/s vs "
                    "Dask workers; label quality. Writes OUT/suite.md and OUT/suite.json. Runs "
                    "benchmarks/suite.py of a source checkout (beside the package or in the current directory).")
    # Options (--quick, --sizes, --out, ... and --help) go to benchmarks/suite.py's parser.
    b.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.suite_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    # Dask's own lines (cluster start and stop, ~30 at INFO for --workers 2) bury the run's.
    # Through the environment, read when dask is first imported (only by the commands that
    # use it), and by the workers it starts; a user's own setting wins. --debug shows them.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if args.debug else "warning")
    if args.quiet:   # errors only: no warnings either
        warnings.simplefilter("ignore")
    # A warning is one line that says whose it is, not Python's file, line and source.
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_, **__: (
        f"livedead-gpu: warning: {message}\n" if category is UserWarning
        else f"livedead-gpu: warning ({category.__name__}): {message}\n")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        # Frames finished stay done (a segment run lists them in its manifest); a rerun resumes.
        print("livedead-gpu: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as e:
        if args.debug:
            raise
        what = "out of memory: " if isinstance(e, MemoryError) else ""
        print(f"livedead-gpu: error: {what}{e}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
