"""The article's block-max histogram threshold, vectorised."""

from __future__ import annotations

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
