"""The article's block-max histogram threshold, vectorised; the grey step of integer data (the noise floors)."""

from __future__ import annotations

import numpy as np

from ..backends import get_backend

_BINS = {"uint8": 256, "uint16": 65536}


def threshold_value(k: int, offset: float | None) -> int:
    """The article's threshold from the block-max peak ``k``.

    ``k`` itself when ``offset`` is None, else ``int(offset * (|k - 1| + 1) + 1)``,
    written as the article writes it so the float rounding is the same.
    """
    if offset is None:
        return int(k)
    return int(offset * (abs(k - 1) + 1) + 1)


def block_max_threshold(image, offset: float | None = 1.2, coarseness: int = 16, backend="cpu") -> int:
    """Threshold an intensity image by the peak of its block-maximum histogram.

    The image is tiled into ``coarseness``-square blocks from the top-left (partial
    blocks at the right and bottom edges are blocks too). Each block's maximum is a
    vote; the peak ``k`` is the most voted value other than 0 (``k = 1`` when every
    block maximum is 0). Pixels strictly greater than the returned value are
    foreground. Votes are counted in int64 (the article's uint16 histogram
    overflows past 65,535 blocks).

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array, on the backend's device
        Other integer dtypes must hold values in [0, 65535] and are converted; floats
        are refused (quantise them first, as `cell_area` does with the gradient).
    offset : float or None
        See `threshold_value`.
    coarseness : int
        Block side in pixels, >= 1 and at most each image side.
    backend : str or Backend

    Returns
    -------
    int
        The threshold (may exceed the dtype's maximum: then nothing is foreground).

    Notes
    -----
    A constant image of value ``v > 0`` gets ``k = v`` and so no foreground; an
    all-zero image gets ``k = 1``.
    """
    be = get_backend(backend)
    image = _as_counts(image, be)
    if isinstance(coarseness, bool) or not isinstance(coarseness, int) or coarseness < 1:
        raise ValueError(f"coarseness must be a positive int, got {coarseness!r}")
    if image.ndim != 2 or min(image.shape) < coarseness:
        raise ValueError(
            f"image has shape {image.shape}; expected 2-D with both sides >= coarseness ({coarseness})"
        )
    maxima = be.block_max(image, coarseness)
    k = be.peak(be.votes(maxima, _BINS[image.dtype.name]))
    return threshold_value(k, offset)


def _as_counts(image, be):
    if image.dtype.name in _BINS:
        return image
    if image.dtype.kind in "iu":
        # Two reductions read back to the host: the rare path of an unusual dtype.
        lo, hi = be.to_host(image.min()).item(), be.to_host(image.max()).item()
        if lo < 0 or hi > 65535:
            raise ValueError(f"image has values in [{lo}, {hi}]; the block-max histogram counts 0..65535")
        return image.astype(be.xp.uint16)
    raise TypeError(
        f"image has dtype {image.dtype}; the block-max threshold counts integer intensities "
        "(uint8 or uint16): quantise a float image first"
    )


def grey_levels(sample, backend="cpu"):
    """The distinct non-zero values of an integer image sample, sorted, on the host.

    What `grey_step` needs of a sample; the levels of several samples (a mosaic's
    tiles) are combined with ``np.union1d``.

    Parameters
    ----------
    sample : uint8 or uint16 array, any shape (e.g. every 4th row and column of an image)

    Returns
    -------
    (k,) int64 NumPy array (empty for other dtypes, e.g. float: no grey levels)
    """
    be = get_backend(backend)
    xp = be.xp
    if sample.dtype.name not in _BINS or sample.size == 0:
        return np.zeros(0, np.int64)
    levels = xp.flatnonzero(be.votes(sample, _BINS[sample.dtype.name])[1:]) + 1
    # The distinct values to the host, one transfer of at most 65,535 (thousands in practice).
    return be.to_host(levels).astype(np.int64)


def grey_step(levels) -> int:
    """The spacing of an image's grey levels: the gcd of the differences of its ``levels``.

    1 for most camera images; 16 for 12-bit data shifted into 16 bits, 257 for 8-bit
    data scaled to 16 (``skimage.img_as_uint``). The noise floors of the thresholds
    are one grey step, not one unit, so that an image and the same image rescaled
    get the same thresholds (a flat background has no measurable noise, and a floor
    of one unit under a step of 16 made noise specks nuclei: Coelho's 8-bit images
    scaled by 16 scored F1 0.27 against 0.90). 0 is left out: it is registration
    padding (no data) in this package.

    Parameters
    ----------
    levels : (k,) int array, `grey_levels` of an image (any order)

    Returns
    -------
    int, >= 1
    """
    levels = np.unique(np.asarray(levels, np.int64))
    step = int(np.gcd.reduce(np.diff(levels))) if levels.size > 1 else 1
    return max(step, 1)
