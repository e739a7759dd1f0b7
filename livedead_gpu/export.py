"""Plate in, training set out: read each frame, segment it, write it; resumable.

`export_plate` walks a plate frame by frame (one frame in memory at a time). For
each frame it writes the TIFFs (`livedead_gpu.io.training`) and then, last, a small
JSON record. A rerun skips every frame whose record names the same parameter hash,
the same export options and the same source files (size and mtime) and whose files
exist; it redoes the others. At the end of every run the manifest is rebuilt from
the records of this run's frames and written atomically, so a run killed at any
instant (SIGKILL included) leaves no partial file under a final name and no
duplicated row, and the next run completes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .backends import CpuBackend, check_backend, get_backend
from .checks import saying_where
from .io import atomic
from .io.plate import Plate, PlateError, open_plate
from .io.training import (
    ERROR_COLUMNS,
    MANIFEST_COLUMNS,
    PATCH_COLUMNS,
    SPLITS,
    frame_stem,
    optional_files,
    read_record,
    write_csv,
    write_patches,
    write_record,
    write_training_frame,
)
from .params import SegmentParams, as_params
from .pipeline import bleed_readings, plate_value, segment_frame
from .stages.nuclei import bleed_from
from .stages.nuclei import labelled

__all__ = ["ExportSummary", "export_plate", "extract_patches", "first_frames", "plate_bleed", "split_wells",
           "unet_weights"]

log = logging.getLogger("livedead_gpu")

W0, SIGMA = 10.0, 5.0
MIN_FOREGROUND = 0.05
_CUTOFF = 1e-6   # border terms below this are left out (bounds the search radius)


# --------------------------------------------------------------------------- weights


def unet_weights(classes, cells, w0: float = W0, sigma: float = SIGMA) -> np.ndarray:
    """U-Net loss weights (Ronneberger et al. 2015, eq. 2).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))``

    Parameters
    ----------
    classes : (M, N) uint8 ndarray
        Class mask; ``w_c`` balances its classes: a pixel of class ``k`` gets
        ``N_pixels / (K * n_k)``, ``K`` the number of classes present and ``n_k`` the
        pixels of class ``k``, so ``w_c`` averages 1 over the frame.
    cells : (M, N) int ndarray
        Cell instance labels, 0 outside cells (background and outlines).
    w0, sigma : float
        10 and 5 px by default, as in the paper.

    Returns
    -------
    (M, N) float32 ndarray

    Notes
    -----
    ``d1``, ``d2`` are the Euclidean distances (pixel centre to pixel centre) to the
    nearest and second-nearest cell. As in the paper the border term applies to
    pixels outside every cell (``cells == 0``: background and the outlines between
    cells); it is 0 with fewer than two cells. Distances are searched within
    ``sigma * sqrt(2 ln(w0 / 1e-6))`` of each cell, so a term is exact or below 1e-6.
    """
    classes = np.asarray(classes)
    cells = np.asarray(cells)
    if classes.shape != cells.shape or classes.ndim != 2:
        raise ValueError(f"classes and cells must be one 2-D shape, got {classes.shape} and {cells.shape}")
    if not (w0 >= 0 and sigma > 0):
        raise ValueError(f"need w0 >= 0 and sigma > 0, got w0={w0}, sigma={sigma}")
    counts = np.bincount(classes.ravel(), minlength=256).astype(np.float64)
    present = counts > 0
    wc = np.zeros_like(counts)
    wc[present] = classes.size / (present.sum() * counts[present])
    wc = wc.astype(np.float32)
    # C order whatever the inputs' (the border term is written through ravel() below)
    w = cv2.LUT(classes, wc[:256]) if classes.dtype == np.uint8 else np.ascontiguousarray(wc[classes])

    ids, y_lo, y_hi, x_lo, x_hi = _boxes(cells)
    if len(ids) < 2 or w0 == 0:
        return w
    reach = int(math.ceil(sigma * math.sqrt(2 * math.log(max(w0, 1e-300) / _CUTOFF)))) if w0 > _CUTOFF else 0
    m, n = cells.shape
    # Squared distances to the nearest and second-nearest cell. OpenCV's exact
    # transform is off by an ulp or so from run to run (it depends on what the heap
    # held); its square is an integer (exact in float32 up to 2**24), so rounded it
    # gives bit-identical reruns.
    q1 = np.full(cells.shape, np.inf, np.float32)
    q2 = np.full(cells.shape, np.inf, np.float32)
    for i, a, b, c, d in zip(ids.tolist(), y_lo.tolist(), y_hi.tolist(), x_lo.tolist(), x_hi.tolist()):
        win = (slice(max(a - reach, 0), min(b + reach + 1, m)),
               slice(max(c - reach, 0), min(d + reach + 1, n)))
        q = cv2.distanceTransform((cells[win] != i).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        np.multiply(q, q, out=q)
        np.rint(q, out=q)
        w1, w2 = q1[win], q2[win]
        np.minimum(w2, np.maximum(w1, q), out=w2)   # the old nearest when cell i is nearer
        np.minimum(w1, q, out=w1)
    outside = np.flatnonzero(cells.ravel() == 0)
    # inf where fewer than two cells are in reach
    s = (np.sqrt(q1.ravel()[outside]) + np.sqrt(q2.ravel()[outside])).astype(np.float64)
    border = w0 * np.exp(-(s * s) / (2 * sigma * sigma))
    w.ravel()[outside] = (w.ravel()[outside] + border).astype(np.float32)
    return w


def _boxes(cells):
    """The labels in ``cells`` (0 left out) and their bounding boxes, inclusive.

    Returns
    -------
    ids, y_lo, y_hi, x_lo, x_hi : (K,) ndarray each
    """
    flat = cells.ravel()
    at = labelled(flat, np)
    labels = flat[at]
    order = np.argsort(labels, kind="stable")   # each label's pixels stay in raster order
    at, labels = at[order], labels[order]
    ys, xs = np.divmod(at, cells.shape[1])
    if not labels.size:
        return labels, ys, ys, xs, xs
    starts = np.flatnonzero(np.diff(labels, prepend=labels[0] - 1))
    ends = np.append(starts[1:], len(at)) - 1
    return (labels[starts], ys[starts], ys[ends],
            np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts))


# --------------------------------------------------------------------------- patches, split


def extract_patches(classes, size: int, min_foreground: float = MIN_FOREGROUND):
    """Top-left corners of the ``size`` × ``size`` tiles (non-overlapping, from the
    top-left; a partial tile at the right or bottom edge is left out) whose share of
    non-background pixels is at least ``min_foreground``.

    Returns
    -------
    list of (y, x, fraction)
    """
    m, n = classes.shape
    out = []
    for y in range(0, m - size + 1, size):
        for x in range(0, n - size + 1, size):
            frac = float(np.count_nonzero(classes[y:y + size, x:x + size])) / (size * size)
            if frac >= min_foreground:
                out.append((y, x, frac))
    return out


def progress_bar(total: int, enabled: bool):
    """A tqdm progress bar over ``total`` frames on stderr (a silent one when not ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def split_wells(wells, fractions=(0.7, 0.15, 0.15), seed=0, keep=None) -> dict:
    """Assign whole wells to train/val/test, deterministic in ``seed``.

    The sorted distinct wells are shuffled with ``numpy.random.default_rng(seed)``;
    the first ``round(f_train * n)`` go to train, up to ``round((f_train + f_val) * n)``
    to val, the rest to test. No well is in two splits.

    ``keep`` (well -> split, an earlier export's) holds those of ``wells`` where they
    were: a plate that gains or loses wells must not move a trained-on well into
    val or test. The other wells, in the seed's shuffled order, each go to the split
    furthest under its share of all ``wells`` (ties: train, val, test).
    """
    fr = _check_split(fractions)
    _check_seed(seed)
    wells = sorted(set(wells))
    perm = np.random.default_rng(seed).permutation(len(wells))
    out = {w: s for w, s in (keep or {}).items() if w in set(wells) and s in SPLITS}
    if not out:
        cuts = np.rint(np.cumsum(fr) * len(wells)).astype(int)
        for pos, i in enumerate(perm):
            out[wells[i]] = SPLITS[min(int(np.searchsorted(cuts, pos, side="right")), 2)]
        return out
    counts = {name: sum(s == name for s in out.values()) for name in SPLITS}
    for i in perm:
        if wells[i] not in out:
            name = max(SPLITS, key=lambda n: (fr[SPLITS.index(n)] * len(wells) - counts[n], -SPLITS.index(n)))
            out[wells[i]] = name
            counts[name] += 1
    return dict(sorted(out.items()))


def _check_split(fractions):
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        fr = []
    if len(fr) != 3 or any(not (f >= 0) for f in fr) or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
        raise ValueError(f"split must be three fractions >= 0 (train, val, test) summing to 1, got {fractions!r}")
    return fr


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0 (the seed of the well split), got {seed!r}")
    return int(seed)


def _check_patches(patches):
    if patches is None or patches is False:
        return None
    if isinstance(patches, dict):
        size, frac = patches.get("size"), patches.get("min_foreground", MIN_FOREGROUND)
    elif isinstance(patches, (tuple, list)):
        size, frac = (list(patches) + [MIN_FOREGROUND])[:2]
    else:
        size, frac = patches, MIN_FOREGROUND
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"patches: size must be an int >= 8, got {size!r}")
    frac = float(frac)
    if not 0 <= frac <= 1:
        raise ValueError(f"patches: min_foreground must lie in [0, 1], got {frac}")
    return {"size": int(size), "min_foreground": frac}


# --------------------------------------------------------------------------- export


@dataclass
class ExportSummary:
    """What `export_plate` did.

    Attributes
    ----------
    out : Path
    frames : int
        Frames in the plate (those with problems included).
    written : list of FrameKey
        Frames segmented and written in this run.
    resumed : list of FrameKey
        Frames skipped because a previous run had done them with the same parameters.
    failed : list of (FrameKey, str)
        Frames skipped for an error (``on_error="skip"``), with the message.
    manifest : Path
    params_hash : str
    bleed : float or None
        The plate's Hoechst bleed-through (`plate_bleed`) that replaced
        ``bleed="auto"``; None when the parameters gave a number (or no series could
        be read).
    seconds : float
    """

    out: Path
    frames: int
    written: list = field(default_factory=list)
    resumed: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    manifest: Path | None = None
    params_hash: str = ""
    bleed: float | None = None
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return len(self.written) + len(self.resumed)


def first_frames(plate) -> dict:
    """The first time point of each series of ``plate``: ``{(well, site): FrameKey}``.

    Frames with a known problem (`Plate.problems`) are passed over.
    """
    first = {}
    for key in plate.keys():
        series = (key.well, key.site)
        if key not in plate.problems and (series not in first or key.time < first[series].time):
            first[series] = key
    return first


def _series_readings(plate, key, params, backend):
    """`bleed_readings` of one frame of ``plate``; None (and a log line) when it cannot be read."""
    try:
        frame = plate.read(key)
        return bleed_readings(frame.hoechst, frame.draq7, params, backend, brightfield=frame.brightfield)
    except (PlateError, ValueError, TypeError, OSError) as e:
        # The frame's own turn in the export reports it (or skips it) as on_error says.
        log.info("bleed: %s s%s t%s left out: %s", key.well, key.site, key.time, e)
        return None


def plate_bleed(plate, params: SegmentParams | None = None, backend="cpu", scheduler=None):
    """The Hoechst bleed-through into Draq7 of a whole plate, for ``bleed="auto"``.

    Bleed-through belongs to the filters and the dyes: one number for a plate. A frame
    late in a kill assay, though, may have too few live nuclei to measure it on
    (`livedead_gpu.stages.nuclei.bleed_from`), and a per-frame estimate then lands
    on the dead nuclei and calls just-dead ones live. So it is measured on the first
    time point of each series (well and site), before most cells die, with the nuclei
    of all of them pooled (`livedead_gpu.pipeline.plate_value`): the live nuclei of
    every well give the number, wells dead from the start (positive controls) do not
    pull it off, and fields too sparse to measure alone still count.

    Parameters
    ----------
    plate : Plate
    params : SegmentParams, optional
    backend : {"cpu", "auto", "gpu"} or Backend
    scheduler : None, str or distributed.Client, optional
        As in `export_plate`: None measures the frames here, one after another.

    Returns
    -------
    bleed : float or None
        None when no series' first frame could be read.
    per_series : dict of (well, site) -> float
        Each series' own reading (`bleed_from` of its first frame alone).
    """
    params = as_params(params)
    firsts = sorted(first_frames(plate).items())
    if scheduler is None:
        readings = [_series_readings(plate, key, params, backend) for _, key in firsts]
    else:
        import dask

        _check_scheduler(scheduler)
        readings = dask.compute(*[dask.delayed(_series_readings, pure=True)(plate, key, params, backend)
                                  for _, key in firsts], scheduler=scheduler)
    kept = {series: r for (series, _), r in zip(firsts, readings) if r is not None}
    return plate_value(kept.values()), {series: bleed_from(r) for series, r in kept.items()}


def _resolve_bleed(plate, out, params, backend, scheduler, resume):
    """``params`` with ``bleed="auto"`` replaced by `plate_bleed`, and that number.

    The measurement is kept in ``OUT/bleed.json`` with the parameters and the source
    files it was made from, so a resumed run reuses it instead of reading the first
    time points again (and, with the same number, keeps its frames).
    """
    if params.dead_call != "ratio" or params.bleed != "auto":
        return params, None
    path = out / "bleed.json"
    made_of = {"params_hash": params.digest(),
               "sources": {frame_stem(*key): _source_signature(plate, key)
                           for key in first_frames(plate).values()}}
    try:
        kept = json.loads(path.read_text()) if resume else None
    except (OSError, ValueError):
        kept = None
    if isinstance(kept, dict) and all(kept.get(k) == v for k, v in made_of.items()) \
            and isinstance(kept.get("bleed"), float):
        value = kept["bleed"]
    else:
        value, per_series = plate_bleed(plate, params, backend, scheduler)
        if value is None:
            return params, None
        series = {f"{well}_s{int(site):02d}": round(v, 4) for (well, site), v in sorted(per_series.items())}
        atomic.atomic_write_text(path, json.dumps({**made_of, "bleed": value, "series": series},
                                                  indent=1, sort_keys=True) + "\n")
    log.info("bleed: %.3f, measured on the first time point of each series (%s)", value, path)
    return dataclasses.replace(params, bleed=value), value


def _in_turn(backend):
    """``backend``, or for the CPU one that runs a frame's stages in turn (`CpuBackend.together`).

    A plate export keeps the cores busy itself (its writer thread; Dask's frames across
    workers): the stages side by side too bought no frames/s and cost ~100 MiB of
    peak memory (benchmarks/README.md, session 9).
    """
    return CpuBackend(overlap=False) if isinstance(backend, CpuBackend) else backend


def export_plate(plate, out, params: SegmentParams | None = None, backend="cpu", weights=False,
                 patches=None, split=(0.7, 0.15, 0.15), seed: int = 0, on_error: str = "raise",
                 progress: bool = False, layout: str = "auto", pattern=None,
                 channel_map=None, scheduler=None, opencv_threads: int | None = None,
                 resume: bool = True, z: int | None = None) -> ExportSummary:
    """Segment every frame of a plate and write a U-Net training set, resumably.

    Parameters
    ----------
    plate : Plate or str or Path
        A `livedead_gpu.io.Plate`, or a path opened with
        ``open_plate(plate, layout, pattern, channel_map, exclude=[out], z=z)`` (``z``: the
        focal plane of plates imaged in several).
    out : str or Path
        Output folder (see `livedead_gpu.io.training` for its layout). A rerun into
        the same folder resumes: frames done with the same parameters are skipped.
        It may lie inside the plate folder (its files are not taken for the plate's),
        but not be that folder.
    params : SegmentParams, optional
        With ``bleed="auto"`` (the default) the bleed-through is measured once for
        the plate (`plate_bleed`) and that number replaces "auto" for every frame,
        in ``params.toml`` and in the parameter hash alike.
    backend : {"cpu", "auto", "gpu"}
    weights : bool or dict
        Also write U-Net weight maps; a dict may give ``w0`` and ``sigma``.
    patches : int, (int, float) or dict, optional
        Also write ``size`` × ``size`` patches holding at least ``min_foreground``
        (default 0.05) non-background pixels.
    split : (float, float, float)
        Train/val/test fractions of the plate's wells (`split_wells`).
    seed : int
        Seed of the well split.
    on_error : {"raise", "skip"}
        ``"raise"``: a plate problem found at discovery (missing channel or time
        point) stops the run before anything is written, and an unreadable frame
        stops it where it is (frames already written stay done). ``"skip"``: such
        frames are left out, listed in ``errors.csv`` and in the summary.
    progress : bool
        A progress bar on stderr.
    scheduler : None, str or distributed.Client, optional
        None (default): this process, frame after frame. Otherwise the frames are
        mapped through Dask (`livedead_gpu.distributed.export_frames`): a local
        scheduler name ("threads", "processes", "synchronous") or a
        `distributed.Client` (see `livedead_gpu.distributed.connect`). The training
        set is byte-identical to the serial run's.
    opencv_threads : int, optional
        ``cv2.setNumThreads`` in each Dask task (1 for a fair split of the cores
        between workers); OpenCV's default when omitted.
    resume : bool
        True (default): frames already written with the same parameters, options
        and sources are kept. False: every frame of the plate is redone (its record
        is dropped first, so a run stopped half-way is still a consistent set that
        the next resuming run completes).

    Returns
    -------
    ExportSummary
    """
    start = time.perf_counter()
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    params = as_params(params)
    fractions = _check_split(split)
    seed = _check_seed(seed)   # an int (a NumPy integer would not go into export.json)
    # A bad name, or (serial runs) "gpu" without one, fails before anything is written;
    # Dask workers resolve the name on their own devices.
    if scheduler is None:
        backend = _in_turn(get_backend(backend))
    else:
        _check_scheduler(scheduler)
        check_backend(backend)
    patch_opts = _check_patches(patches)
    weight_opts = None
    if weights:
        unknown = sorted(set(weights) - {"w0", "sigma"}) if isinstance(weights, dict) else []
        if unknown:
            raise ValueError(f"weights: unknown option(s) {', '.join(map(str, unknown))}; known: w0, sigma")
        weight_opts = {"w0": W0, "sigma": SIGMA, **(weights if isinstance(weights, dict) else {})}
        for name in ("w0", "sigma"):
            value = weight_opts[name]
            ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if name == "sigma" else value < 0):
                raise ValueError(f"weights[{name!r}] must be a number {'>' if name == 'sigma' else '>='} 0, "
                                 f"got {value!r}")
        weight_opts = {name: float(weight_opts[name]) for name in ("w0", "sigma")}
    out = Path(out)
    root = plate.root if isinstance(plate, Plate) else Path(plate)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out {str(out)!r} is a file; expected a folder (new or a training set)")
    if root.is_dir() and out.resolve() == root.resolve():
        raise ValueError(f"out {str(out)!r} is the plate folder itself; give the training set a folder of its own "
                         "(a subfolder of the plate is fine)")
    if not isinstance(plate, Plate):
        plate = open_plate(plate, layout=layout, pattern=pattern, channel_map=channel_map, exclude=[out], z=z)
    keys = plate.keys()
    if plate.ignored:  # thumbnails and the like, or a second layout's files: say so with -v
        log.info("%d TIFF file(s) in %s match no %s name and are not read, e.g. %s", len(plate.ignored),
                 plate.root, plate.layout, plate.ignored[0])
    if plate.problems and on_error == "raise":
        msgs = [plate.problems[k] for k in sorted(plate.problems)]
        more = f" (and {len(msgs) - 3} more)" if len(msgs) > 3 else ""
        raise PlateError("; ".join(msgs[:3]) + more + " — nothing written; on_error='skip' (--on-error skip) leaves such frames out")

    out.mkdir(parents=True, exist_ok=True)
    options = {"weights": weight_opts, "patches": patch_opts}
    about = _earlier_export(out)   # read once: the earlier run's splits and version
    earlier = _earlier_splits(about, fractions, seed) or {}
    splits = split_wells(plate.wells, fractions, seed, keep=earlier)
    # Wells of earlier runs that this plate lacks keep their split for when they come back.
    remembered = {**earlier, **splits}
    empty = [name for name, fr in zip(SPLITS, fractions) if fr > 0 and name not in splits.values()]
    if empty:  # a small plate: the loader's val or test split would be empty without a word
        log.warning("%d well(s) split %s: none for %s", len(set(plate.wells)),
                    "/".join(f"{f:g}" for f in fractions), " or ".join(empty))
    records = {}
    with _lock(out), ThreadPoolExecutor(1, thread_name_prefix="livedead-writer") as pool:
        for p in atomic.remove_partials(out):
            log.info("removed %s, left by an interrupted run", p)
        params, bleed = _resolve_bleed(plate, out, params, backend, scheduler, resume)
        digest = params.digest()
        summary = ExportSummary(out=out, frames=len(keys), params_hash=digest, bleed=bleed)
        from . import __version__

        version = about.get("version")
        if resume and version not in (None, __version__):
            # The parameter hash says nothing of the code: frames kept are the older version's.
            log.warning("%s was written by livedead_gpu %s (this is %s): frames done there with the same "
                        "parameters are kept as they are; resume=False (--no-resume) redoes them",
                        out, version, __version__)
        if not resume:
            for key in keys:
                _forget(out, frame_stem(*key))
        # Before any frame is overwritten, the manifests list only the frames this run
        # keeps as they are: killed before its end, a rerun with other settings leaves a
        # smaller training set, not rows of one run over files of the next.
        kept = {}
        for key in keys:
            rec = None if key in plate.problems else read_record(out, frame_stem(*key))
            if rec is not None and _is_done(out, rec, digest, options, _source_signature(plate, key)):
                kept[key] = rec
        if (out / "manifest.csv").exists():
            _write_listing(out, params, bleed, kept, splits, remembered, [], plate, fractions, seed, options)
        try:
            _export_frames(plate, keys, kept, out, params, backend, digest, options, summary, records, on_error,
                           progress, scheduler, opencv_threads, pool)
        except BaseException:
            # Stopped (an error, Ctrl-C): the manifests list the frames done, this run's and the
            # earlier ones it kept, so the set is usable as it stands; a rerun completes it.
            with contextlib.suppress(Exception):
                _write_listing(out, params, bleed, {**kept, **records}, splits, remembered, summary.failed, plate,
                               fractions, seed, options)
            raise
        summary.manifest = _write_listing(out, params, bleed, records, splits, remembered, summary.failed, plate,
                                          fractions, seed, options)
        _report_strays(out, keys)
    summary.seconds = time.perf_counter() - start
    return summary


def _export_frames(plate, keys, kept, out, params, backend, digest, options, summary, records, on_error,
                   progress, scheduler, opencv_threads, pool):
    """`export_plate`'s frames: in turn here, or on Dask; fills ``records`` and ``summary``.

    ``kept``: the frames done before with these parameters, options and sources (key ->
    record), which are not redone.

    In turn, the ``pool``'s one thread writes frame i (zlib, fsync, weight map) while
    frame i + 1 is read and segmented (both release the GIL for most of their time);
    at most one frame is waiting to be written, so memory stays that of two frames.
    """
    pending = None
    warned = False   # of patches larger than the frames

    def finish():
        nonlocal pending
        if pending is not None:
            key, future = pending
            pending = None
            records[key] = future.result()

    bar = progress_bar(len(keys), progress and scheduler is None)
    try:
        for key in keys if scheduler is None else ():   # Dask: see below
            stem = frame_stem(*key)
            status = "failed"
            if key in plate.problems:
                summary.failed.append((key, plate.problems[key]))
                _forget(out, stem)
            elif key in kept:
                records[key] = kept[key]
                summary.resumed.append(key)
                status = "done before"
            else:
                sig = _source_signature(plate, key)   # only for a frame to write: the pre-pass had the others'
                try:
                    frame = plate.read(key)
                    size = (options["patches"] or {}).get("size", 0)
                    if size > min(frame.brightfield.shape) and not warned:
                        log.warning("patches of %d px do not fit frames of %s px: none is written",
                                    size, "x".join(map(str, frame.brightfield.shape)))
                        warned = True
                    result = _segment_saying_which(frame, params, backend)
                    image = _as_uint16(frame.stack(), frame.sources)
                except (PlateError, ValueError, TypeError, OSError) as e:
                    if on_error == "raise":
                        raise _frame_error(plate, key, e) from e
                    summary.failed.append((key, str(e)))
                    _forget(out, stem)
                else:
                    finish()
                    pending = (key, pool.submit(_write_frame, out, stem, key, frame, image, result,
                                                digest, options, sig))
                    del frame, image, result
                    summary.written.append(key)
                    status = "written"
            bar.update(1)
            bar.set_postfix_str(f"{key.well} s{key.site} t{key.time} {status}", refresh=False)
    finally:
        bar.close()
        finish()   # the last frame's files (or, after an error, the frame before it) are kept
    if scheduler is not None:
        from .distributed import export_frames

        export_frames(plate, keys, kept, out, params, backend, digest, options, summary, records, on_error,
                      progress, scheduler, opencv_threads)


#: Dask's names of its local schedulers, which ``dask.compute(scheduler=)`` takes.
_DASK_LOCAL = ("sync", "synchronous", "single-threaded", "threads", "threading", "processes", "multiprocessing")


def _segment_saying_which(frame, params, backend):
    """`segment_frame` of a plate's frame; its warnings name the frame and its file
    (`livedead_gpu.checks.saying_where`), on whichever thread it runs."""
    key = frame.key
    # the frame after the message: warning filters match a message from its start
    with saying_where(f"well {key.well} site {key.site} time {key.time}, {frame.sources.get('brightfield', '')}"):
        return segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params, backend=backend)


def _check_scheduler(scheduler):
    """A scheduler string must be a local scheduler's name: an address or "local" goes through
    `livedead_gpu.distributed.connect`, which makes the Client this function takes."""
    if isinstance(scheduler, str) and scheduler not in _DASK_LOCAL:
        raise ValueError(
            f"scheduler must be one of {', '.join(map(repr, _DASK_LOCAL))} or a distributed.Client, got "
            f"{scheduler!r} (for an address or a local cluster: "
            f"`with livedead_gpu.distributed.connect({scheduler!r}) as client: export_plate(..., scheduler=client)`)")


def _frame_error(plate, key, error):
    """``error`` with its frame and files named: the pipeline's messages name only the channel
    ("brightfield has shape ..."); a `PlateError` names its files already."""
    if isinstance(error, PlateError):
        return error
    files = ", ".join(str(p) for p in plate.sources(key))
    return PlateError(f"well {key.well} site {key.site} time {key.time} ({files}): {error}")


def _as_uint16(stack, sources):
    """The (3, M, N) input stack as stored, uint16; a plane out of that range is an error naming its file.

    Called after `segment_frame`, whose checks name what is wrong with a channel (bool,
    NaN, a float image normalised to [0, 1]) before this one would.
    """
    if stack.dtype == np.uint16:
        return stack
    if stack.dtype.kind in "uif" and (stack.size == 0 or (stack.min() >= 0 and stack.max() <= 65535)):
        return (np.rint(stack) if stack.dtype.kind == "f" else stack).astype(np.uint16)
    for role, plane in zip(("brightfield", "hoechst", "draq7"), stack):
        if plane.dtype.kind not in "uif" or plane.min() < 0 or plane.max() > 65535:
            where = sources.get(role, role)
            found = f"values in [{plane.min()}, {plane.max()}]" if plane.dtype.kind in "uif" else "values"
            raise PlateError(f"{where}: the {role} channel ({plane.dtype}) holds {found}; the training set "
                             "stores its input stack as uint16 (0..65535)")
    raise PlateError(f"{', '.join(sorted(set(sources.values())))}: dtype {stack.dtype} cannot be stored as the "
                     "uint16 input stack")


def _write_frame(out, stem, key, frame, image, result, digest, options, sig) -> dict:
    # The old record goes before any of its files changes: a run killed halfway through
    # this frame then leaves it undone, not an old record beside new files.
    _forget(out, stem)
    w = None
    if options["weights"]:
        w = unet_weights(result.classes, result.cells, **options["weights"])
    rel = write_training_frame(out, stem, image, result.classes, result.cells, w, frame.pixel_size,
                               uid_seed=digest)
    patch_rows = []
    if options["patches"]:
        size = options["patches"]["size"]
        found = extract_patches(result.classes, size, options["patches"]["min_foreground"])
        if found:
            sl = [(slice(y, y + size), slice(x, x + size)) for y, x, _ in found]
            prel = write_patches(
                out, stem, np.stack([image[(slice(None),) + s] for s in sl]),
                np.stack([result.classes[s] for s in sl]),
                None if w is None else np.stack([w[s] for s in sl]), frame.pixel_size)
            patch_rows = [{"index": j, "y": y, "x": x, "size": size, "frac_foreground": round(f, 6),
                           "image": prel["image"], "classes": prel["classes"], "weights": prel["weights"]}
                          for j, (y, x, f) in enumerate(found)]
    counts = np.bincount(result.classes.ravel(), minlength=5)[:5] / result.classes.size
    n = result.n_live + result.n_dead
    th = result.thresholds
    stats = {
        "n_live": result.n_live, "n_dead": result.n_dead,
        "dead_fraction": round(result.n_dead / n, 6) if n else None,  # no nuclei: an empty cell, not 0
        **{f"frac_{name}": round(float(c), 6) for name, c in
           zip(("background", "cell", "outline", "hoechst", "draq7"), counts)},
        "thr_gradient": _num(th.get("gradient")), "thr_hoechst": _num(th.get("hoechst")),
        "thr_draq7": _num(th.get("draq7")), "bleed": _num(th.get("bleed")),
        "hoechst_smoothing": _num(th.get("hoechst_smoothing")),
        "n_patches": len(patch_rows), "height": int(image.shape[1]), "width": int(image.shape[2]),
        "pixel_size": frame.pixel_size,
        "channels": "|".join(frame.channel_names[r] for r in ("brightfield", "hoechst", "draq7")),
    }
    record = {"well": key.well, "site": key.site, "time": key.time, "params_hash": digest,
              "options": options, "sources": sig, "files": rel, "stats": stats, "patches": patch_rows}
    write_record(out, stem, record)
    # A frame redone with other options (no weight map or patches now) drops such files
    # of an earlier run; a kill before this leaves them, listed nowhere.
    listed = {rel["weights"]} | {row[k] for row in patch_rows for k in ("image", "classes", "weights")}
    for name in set(optional_files(stem)) - listed:
        (out / name).unlink(missing_ok=True)
    return json_roundtrip(record)


def json_roundtrip(record):
    """The record as `read_record` would return it (so a resumed and a fresh run agree)."""
    return json.loads(json.dumps({"version": 1, **record}, sort_keys=True))


def _num(v):
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):   # e.g. no block shows the brightfield's noise: JSON has no inf
        return None
    return int(v) if v.is_integer() else round(v, 6)


def _source_signature(plate, key):
    sig = []
    for p in plate.sources(key):
        p = Path(p)
        try:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = None
        try:
            rel = p.relative_to(plate.root).as_posix() if plate.root.is_dir() else p.name
        except ValueError:
            rel = str(p)
        sig.append([rel, size, mtime])
    return {"files": sorted(sig), "roles": plate.roles(key)}


def _is_done(out, rec, digest, options, sig) -> bool:
    if rec is None or rec.get("params_hash") != digest or rec.get("options") != options:
        return False
    if rec.get("sources") != sig:
        return False
    files = [f for f in rec.get("files", {}).values() if f]
    files += [r[k] for r in rec.get("patches", []) for k in ("image", "classes", "weights") if r.get(k)]
    return all((out / f).is_file() for f in files)


def _report_strays(out, keys):
    """Say so when OUT holds frames of an earlier run that this plate no longer has: their
    files stay (deleting a user's files is not an export's call), in no manifest."""
    stems = {frame_stem(*key) for key in keys}
    strays = sorted(p.stem for p in (out / "records").glob("*.json") if p.stem not in stems)
    if strays:
        log.warning("%d frame(s) in %s are not in this plate (%s%s): their files stay, listed in no manifest",
                    len(strays), out, ", ".join(strays[:3]), ", ..." if len(strays) > 3 else "")


def _forget(out, stem):
    (out / "records" / f"{stem}.json").unlink(missing_ok=True)


def _write_listing(out, params, bleed, records, splits, remembered, failed, plate, fractions, seed,
                   options) -> Path:
    """``params.toml``, ``export.json`` and the manifests, together: they describe the same frames.

    ``remembered``: the wells' splits to keep for later runs, those of wells this plate
    lacks included."""
    note = "" if bleed is None else (
        '# bleed: measured for bleed = "auto" on the first time point of each series '
        "(bleed.json)\n")
    atomic.atomic_write_text(out / "params.toml", note + params.to_toml())
    from . import __version__

    # What made the set besides the parameters; no date, so a resumed run's is the same bytes.
    about = {"version": __version__, "plate": str(Path(plate.root).resolve()), "layout": plate.layout,
             "split": fractions, "seed": seed, "options": options, "wells": remembered}
    atomic.atomic_write_text(out / EXPORT_JSON, json.dumps(about, indent=1, sort_keys=True) + "\n")
    return _write_manifests(out, records, splits, failed)


#: the export's own settings and each well's split, beside params.toml
EXPORT_JSON = "export.json"


def _earlier_export(out) -> dict:
    """The ``export.json`` of the training set in ``out``: {} when there is none or it does not read."""
    try:
        about = json.loads((Path(out) / EXPORT_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return about if isinstance(about, dict) else {}


def _earlier_splits(about, fractions, seed):
    """The wells' splits of an earlier export (``about``, its export.json) when it was split alike, else None."""
    try:
        same = about["seed"] == seed and np.allclose(about["split"], fractions)
        return dict(about["wells"]) if same else None
    except (KeyError, TypeError, ValueError):
        return None


def _write_manifests(out, records, splits, failed) -> Path:
    rows, patch_rows = [], []
    for key in sorted(records):
        rec = records[key]
        split = splits.get(key.well, "")
        source = ";".join(s[0] for s in rec["sources"]["files"])
        rows.append({"well": key.well, "site": key.site, "time": key.time, **rec["files"],
                     "params_hash": rec["params_hash"], **rec["stats"], "split": split, "source": source})
        for pr in rec.get("patches", []):
            patch_rows.append({"well": key.well, "site": key.site, "time": key.time, "split": split, **pr})
    manifest = write_csv(out / "manifest.csv", MANIFEST_COLUMNS, rows)
    if patch_rows:
        write_csv(out / "patches.csv", PATCH_COLUMNS, patch_rows)
    else:
        (out / "patches.csv").unlink(missing_ok=True)
    if failed:
        write_csv(out / "errors.csv", ERROR_COLUMNS,
                  [{"well": k.well, "site": k.site, "time": k.time, "error": msg} for k, msg in sorted(failed)])
    else:
        (out / "errors.csv").unlink(missing_ok=True)
    return manifest


@contextlib.contextmanager
def _lock(out: Path):
    """One export per output folder at a time (an advisory lock the OS drops when the
    process dies, SIGKILL included)."""
    try:
        import fcntl
    except ImportError:   # not POSIX: no lock
        yield
        return
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another export is writing to {str(out)!r}") from None
        yield
    finally:
        os.close(fd)

