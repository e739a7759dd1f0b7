"""Hoechst and Draq7 nucleus masks, and the labelled nuclei with their live/dead call."""

from __future__ import annotations

from typing import NamedTuple

from ..backends import get_backend
from ..params import SegmentParams
from .threshold import block_max_threshold


def nucleus_mask(image, params: SegmentParams | None = None, backend="cpu"):
    """Threshold one nuclear stain, close the mask, drop small objects.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array (Hoechst or Draq7)
    params : SegmentParams, optional
        ``nucleus_threshold`` ("block-max" or a fixed value), ``nucleus_kernel``,
        ``min_nucleus_area`` (and ``offset``, ``coarseness`` for block-max).

    Returns
    -------
    mask : (M, N) bool array
    threshold : int
    """
    p = params or SegmentParams()
    be = get_backend(backend)
    if p.nucleus_threshold == "block-max":
        threshold = block_max_threshold(image, p.offset, p.coarseness, be)
    else:
        threshold = p.nucleus_threshold
    mask = be.close(be.greater(image, threshold), p.nucleus_kernel)
    if p.min_nucleus_area > 1:
        xp = be.xp
        labels, n = be.label(mask)
        # Areas and the filter over the foreground pixels only (a few % of a frame).
        # On CuPy flatnonzero reads its size back: one sync.
        where = xp.flatnonzero(mask)
        owner = labels.ravel()[where]
        small = xp.bincount(owner, minlength=n + 1) < p.min_nucleus_area
        mask = mask.copy()
        mask.ravel()[where[small[owner]]] = False
    return mask, threshold


class Nuclei(NamedTuple):
    """Labelled nuclei.

    labels : (M, N) int32 array, 0 background, 1..n one per nucleus
    n : int
    dead : (n + 1,) bool array, ``dead[i]`` for nucleus i (``dead[0]`` is False)
    """

    labels: object
    n: int
    dead: object


def nuclei(hoechst_mask, draq7_mask, backend="cpu") -> Nuclei:
    """Label the union of both nucleus masks; a nucleus touching Draq7 is dead.

    Parameters
    ----------
    hoechst_mask, draq7_mask : (M, N) bool arrays

    Returns
    -------
    Nuclei
    """
    be = get_backend(backend)
    labels, n = be.label(hoechst_mask | draq7_mask)
    # Any Draq7 pixel (the mask is already size-filtered) makes the whole nucleus dead.
    # The labels under Draq7 pixels only (a boolean index: a sync on CuPy).
    dead = be.xp.bincount(labels[draq7_mask], minlength=n + 1) > 0
    dead[0] = False
    return Nuclei(labels, n, dead)
