"""`segment_frame`: the article's five-class segmentation of one frame."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import stages
from .backends import get_backend
from .checks import as_intensity, check_same_shape, inside_padding, warn, warn_if_subtracted
from .params import SegmentParams, as_params
from .stages.nuclei import bleed_from

__all__ = ["FrameResult", "bleed_readings", "measure_bleed", "plate_value", "segment_frame"]


@dataclass(frozen=True)
class FrameResult:
    """Everything `segment_frame` found in one frame (host NumPy arrays).

    Attributes
    ----------
    classes : (M, N) uint8 ndarray
        0 background, 1 cell area, 2 outline, 3 Hoechst (live) nucleus, 4 Draq7 (dead) nucleus.
    cells : (M, N) int32 ndarray
        Cell instance labels; cell ``i`` holds nucleus ``i``; 0 on background and outlines.
    nuclei : (M, N) int32 ndarray
        Nucleus instance labels 1..n (live and dead alike).
    dead : (n + 1,) bool ndarray
        ``dead[i]`` for nucleus ``i``.
    thresholds : dict
        ``gradient`` (see `stages.CellArea`), ``gradient_scale`` (its divisor, for
        ``cell_threshold="block-max"``; else None), ``gradient_noise`` (the
        background gradient's scale, for "noise"; else None; both ``inf`` when no
        block of the brightfield can show its noise, all 0 or one value: then no
        cell area; the manifest leaves them empty), ``hoechst`` and
        ``draq7`` (intensities), ``bleed`` (the Hoechst bleed-through taken off the
        Draq7 before the live/dead call; 0 with ``dead_call="touch"``),
        ``hoechst_smoothing`` (the sigma of the Gaussian the Hoechst was thresholded
        after: ``nucleus_smoothing``, with "auto" decided).
    params : SegmentParams
    backend : str
    intermediates : dict
        With ``intermediates=True``: ``gradient`` (float32, smoothed Sobel magnitude),
        ``cell_area``, ``hoechst_mask``, ``draq7_mask`` (bool), ``outlines`` (bool).
    """

    classes: np.ndarray
    cells: np.ndarray
    nuclei: np.ndarray
    dead: np.ndarray
    thresholds: dict
    params: SegmentParams
    backend: str
    intermediates: dict = field(default_factory=dict)

    @property
    def n_dead(self) -> int:
        return int(self.dead.sum())

    @property
    def n_live(self) -> int:
        return len(self.dead) - 1 - self.n_dead

    @property
    def live_nuclei(self) -> np.ndarray:
        """(M, N) int32 labels of the live nuclei only."""
        return np.where(self.dead[self.nuclei], 0, self.nuclei)

    @property
    def dead_nuclei(self) -> np.ndarray:
        """(M, N) int32 labels of the dead nuclei only."""
        return np.where(self.dead[self.nuclei], self.nuclei, 0)


def segment_frame(
    brightfield,
    hoechst,
    draq7,
    params: SegmentParams | None = None,
    backend="cpu",
    intermediates: bool = False,
) -> FrameResult:
    """Segment one frame into the five classes.

    Parameters
    ----------
    brightfield, hoechst, draq7 : (M, N) array_like
        One channel each, one shape. uint8 and uint16 are used as they are; see
        `livedead_gpu.checks.as_intensity` for other dtypes. Each side must be at
        least ``params.coarseness`` pixels.
    params : SegmentParams, optional
        ``SegmentParams()`` when omitted: this package's defaults, which differ from
        the article's method where it measured poorly (``SegmentParams.from_preset(
        "article")`` runs the article's method).
    backend : {"cpu", "auto", "gpu"} or Backend
    intermediates : bool
        Also return the gradient and the intermediate masks.

    Returns
    -------
    FrameResult

    Warns
    -----
    RuntimeWarning
        When the GPU runs out of memory on this frame: the frame is redone on the
        CPU backend (``result.backend == "cpu"``) rather than failing.
    UserWarning
        With ``nucleus_smoothing = 0``, when the Hoechst nuclei stand too dim over
        the noise to threshold pixel by pixel but ``nucleus_smoothing = 1`` would
        find them (the default "auto" smooths them); when
        ``min_nucleus_area`` drops over a quarter of the nuclei found.
    """
    p = as_params(params)
    be = get_backend(backend)
    images = {
        name: as_intensity(image, name, min_side=p.coarseness)
        for name, image in (("brightfield", brightfield), ("hoechst", hoechst), ("draq7", draq7))
    }
    check_same_shape(**images)
    shape = images["brightfield"].shape
    images, box = inside_padding(images, p.coarseness)  # alignment padding: pasted back below
    warn_if_subtracted(images, ("hoechst", "draq7") if p.dead_call == "ratio" else ("hoechst",))
    try:
        result = _segment(images, p, be, intermediates)
    except Exception as error:
        if not be.is_out_of_memory(error):
            raise
        warn(
            f"{be.name} ran out of memory on a {images['brightfield'].shape} frame ({error}); "
            "redoing it on the CPU backend",
            RuntimeWarning,
            stacklevel=2,
        )
        result = _segment(images, p, get_backend("cpu"), intermediates)
    return result if box is None else _paste(result, box, shape)


def _paste(result: FrameResult, box, shape) -> FrameResult:
    """``result`` of the frame inside ``box``, on the whole frame: the margins background."""

    def whole(part):
        out = np.zeros(shape, part.dtype)
        out[box] = part
        return out

    return dataclasses.replace(
        result, classes=whole(result.classes), cells=whole(result.cells), nuclei=whole(result.nuclei),
        intermediates={k: whole(v) for k, v in result.intermediates.items()})


def segment_arrays(brightfield, hoechst, draq7, params: SegmentParams, backend) -> dict:
    """The stages on arrays already on the backend's device; results stay there.

    No input checks (see `segment_frame`) and no transfer but the few scalars the
    thresholds read back: the resident path the GPU benchmarks time.

    Returns
    -------
    dict
        ``classes``, ``cells``, ``nuclei``, ``dead``, ``outlines``, ``cell_area``,
        ``gradient``, ``hoechst_mask``, ``draq7_mask`` (device arrays) and
        ``thresholds`` (host numbers).
    """
    p, be = params, backend
    dim = stages.dim_edges(brightfield, be)   # a registration's dimmed edge lines: padding to both stages
    padding = stages.frame_padding(brightfield, hoechst, draq7, backend=be, dim=dim)
    # The nucleus stage first: on the CPU it runs in this thread, the cell area beside it.
    (nuc, ho_mask, d7_mask, (ho_thr, d7_thr, smoothing)), area = be.together(
        lambda: stages.find_nuclei(hoechst, draq7, p, be, padding=padding),
        lambda: stages.cell_area(brightfield, p, be, dim=dim),
    )
    cells, outlines = stages.separate_cells(area.mask, nuc.labels, be, p.separation)
    return {
        "classes": stages.class_mask(cells, outlines, nuc.labels, nuc.dead, be),
        "cells": cells,
        "nuclei": nuc.labels,
        "dead": nuc.dead,
        "outlines": outlines,
        "cell_area": area.mask,
        "gradient": area.gradient,
        "hoechst_mask": ho_mask,
        "draq7_mask": d7_mask,
        "thresholds": {
            "gradient": area.threshold,
            "gradient_scale": area.scale,
            "gradient_noise": area.noise,
            "hoechst": ho_thr,
            "draq7": d7_thr,
            "bleed": nuc.bleed,
            "hoechst_smoothing": smoothing,
        },
    }


_INTERMEDIATES = ("gradient", "cell_area", "hoechst_mask", "draq7_mask", "outlines")


def _segment(images, p, be, intermediates) -> FrameResult:
    out = segment_arrays(*(be.to_device(images[n]) for n in ("brightfield", "hoechst", "draq7")), p, be)
    host = be.to_host
    return FrameResult(
        classes=host(out["classes"]),
        cells=host(out["cells"]),
        nuclei=host(out["nuclei"]),
        dead=host(out["dead"]),
        thresholds=out["thresholds"],
        params=p,
        backend=be.name,
        intermediates={k: host(out[k]) for k in _INTERMEDIATES} if intermediates else {},
    )


def bleed_readings(hoechst, draq7, params: SegmentParams | None = None, backend="cpu", *,
                   brightfield=None) -> np.ndarray:
    """What ``bleed="auto"`` reads of each nucleus of one frame, found as `segment_frame` finds them.

    Parameters
    ----------
    hoechst, draq7 : (M, N) array_like, as in `segment_frame`
    brightfield : (M, N) array_like, optional
        The frame's brightfield: with it, the alignment padding set aside is the
        one `segment_frame` sets aside (margins of 0 in all three channels), else
        margins of 0 in both stains.
    params : SegmentParams, optional
        Its ``bleed`` is ignored (the measurement is the point).
    backend : {"cpu", "auto", "gpu"} or Backend

    Returns
    -------
    (3, n) float64 array
        `livedead_gpu.stages.nuclei.excess_readings`: per nucleus its Hoechst and Draq7
        excess and the Draq7 excess at the dead line; (3, 0) with
        ``dead_call="touch"``, which takes no bleed off.
    """
    p = as_params(params)
    be = get_backend(backend)
    images = {name: as_intensity(image, name, min_side=p.coarseness)
              for name, image in (("hoechst", hoechst), ("draq7", draq7), ("brightfield", brightfield))
              if image is not None}
    check_same_shape(**images)
    if p.dead_call != "ratio":
        return np.zeros((3, 0))
    images, _ = inside_padding(images, p.coarseness)   # as `segment_frame`
    stains = [be.to_device(images[name]) for name in ("hoechst", "draq7")]
    padding = None
    if "brightfield" in images:
        padding = stages.frame_padding(be.to_device(images["brightfield"]), *stains, backend=be)
    nuc, *_ = stages.find_nuclei(*stains, dataclasses.replace(p, bleed="auto"), be, padding=padding)
    return nuc.readings


def measure_bleed(hoechst, draq7, params: SegmentParams | None = None, backend="cpu") -> float:
    """The Hoechst bleed-through into Draq7 that ``bleed="auto"`` measures on one frame.

    `livedead_gpu.stages.nuclei.bleed_from` of its `bleed_readings`: in [0,
    ``MAX_BLEED``]; 0 with ``dead_call="touch"``. Arguments as `bleed_readings`.
    """
    return bleed_from(bleed_readings(hoechst, draq7, params, backend))


def plate_value(readings) -> float | None:
    """One bleed for a plate, from `bleed_readings` of the first time point of each series.

    The nuclei of all of them pooled (`livedead_gpu.stages.nuclei.bleed_from`): the
    live ones (under the dead line) of every well give the number, so wells dead from
    the start (positive controls) and fields too sparse to say alone do not pull it
    off. To 3 decimals (a tenth of a percent: finer is noise), so that a first frame
    added or redone seldom moves the number, which every frame's parameters hold.
    None for no reading.
    """
    readings = [np.asarray(r, np.float64).reshape(3, -1) for r in readings]
    return round(bleed_from(np.concatenate(readings, axis=1)), 3) if readings else None
