"""The ``livedead-gpu`` command line."""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from pathlib import Path

from .io import atomic_write_text, write_tiff
from .params import SegmentParams
from .pipeline import segment_frame

log = logging.getLogger("livedead_gpu")

SUMMARY_COLUMNS = ["well", "site", "time", "n_live", "n_dead", "dead_fraction", "true_live", "true_dead", "classes_file"]


def _params(path) -> SegmentParams:
    return SegmentParams.from_toml(path) if path else SegmentParams()


def demo(out: Path, backend: str = "cpu", config=None, size: int = 256, times: int = 4, seed: int = 0) -> list[dict]:
    """Segment a small synthetic plate; write masks, a summary CSV and the parameters.

    Returns the summary rows.
    """
    from . import synthetic

    params = _params(config)
    plate = synthetic.make_plate(wells=("A1", "A2", "B1"), sites=1, n_times=times, shape=(size, size), seed=seed)
    rows = []
    for (well, site, t), frame in sorted(plate.items()):
        r = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params, backend=backend)
        stem = f"{well}_s{site}_t{t:03d}"
        write_tiff(out / "masks" / f"{stem}_classes.tif", r.classes)
        write_tiff(out / "masks" / f"{stem}_cells.tif", r.cells)
        n = r.n_live + r.n_dead
        rows.append({
            "well": well, "site": site, "time": t, "n_live": r.n_live, "n_dead": r.n_dead,
            "dead_fraction": round(r.n_dead / n, 4) if n else 0.0,
            "true_live": frame.n_live, "true_dead": frame.n_dead,
            "classes_file": f"masks/{stem}_classes.tif",
        })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buf.getvalue())
    atomic_write_text(out / "params.toml", params.to_toml())
    return rows


def _cmd_demo(args) -> int:
    start = time.perf_counter()
    rows = demo(args.out, args.backend, args.config, args.size, args.times, args.seed)
    print(f"{'well':<5}{'time':>5}{'live':>6}{'dead':>6}  (truth live/dead)")
    for r in rows:
        print(f"{r['well']:<5}{r['time']:>5}{r['n_live']:>6}{r['n_dead']:>6}  ({r['true_live']}/{r['true_dead']})")
    print(f"{len(rows)} frames in {time.perf_counter() - start:.2f} s -> {args.out}/ (masks/, summary.csv, params.toml)")
    return 0


def _cmd_segment(args) -> int:
    from .export import export_plate

    start = time.perf_counter()
    s = export_plate(
        args.plate, args.out, params=_params(args.config), backend=args.backend, weights=args.weights,
        patches=(args.patch_size, args.min_foreground) if args.patch_size else None,
        split=tuple(args.split), seed=args.seed, on_error=args.on_error, progress=args.progress,
        layout=args.layout, pattern=args.pattern, channel_map=args.channel_map)
    print(f"{s.frames} frames: {len(s.written)} written, {len(s.resumed)} done before, "
          f"{len(s.failed)} skipped for errors in {time.perf_counter() - start:.2f} s -> {s.manifest}")
    for key, msg in s.failed:
        print(f"skipped {key.well} s{key.site} t{key.time}: {msg}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livedead-gpu", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true")
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
    g.add_argument("--layout", choices=("auto", "gen5", "imagexpress", "stack"), default="auto")
    g.add_argument("--pattern", help="regex with named groups well, channel[, site, time] matched in "
                   "each file's path relative to PLATE")
    g.add_argument("--channel-map", nargs="+", metavar="NAME=ROLE",
                   help="channel name -> brightfield|hoechst|draq7|ignore (on top of the defaults)")
    g.add_argument("--weights", action="store_true", help="also write U-Net border weight maps")
    g.add_argument("--patch-size", type=int, metavar="N", help="also write N x N patches")
    g.add_argument("--min-foreground", type=float, default=0.05,
                   help="least non-background share of a patch (default: 0.05)")
    g.add_argument("--split", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of wells per split (default: 0.7 0.15 0.15)")
    g.add_argument("--seed", type=int, default=0, help="seed of the well split (default: 0)")
    g.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="stop at an unreadable frame (raise) or list it in errors.csv and go on (skip)")
    g.add_argument("--progress", action="store_true", help="a line per frame on stderr")
    g.set_defaults(func=_cmd_segment)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        if args.debug:
            raise
        print(f"livedead-gpu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
