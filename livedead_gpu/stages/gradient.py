"""Sobel gradient magnitude of brightfield, and its integer scale for thresholding."""

from __future__ import annotations

from ..backends import get_backend

#: which order statistic of the block maxima sets the gradient scale
SCALE_QUANTILE = 0.99


def sobel_magnitude(image, backend="cpu"):
    """Sobel gradient magnitude in OpenCV's convention.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array

    Returns
    -------
    (M, N) float32 array
        ``sqrt(gx**2 + gy**2)`` of the unnormalised 3x3 Sobel derivatives, border
        "reflect 101". Float32, not the article's uint16: a 16-bit image's gradient
        reaches ~370,000, which uint16 cannot hold.
    """
    return get_backend(backend).sobel(image)


def gradient_scale(magnitude, coarseness: int, levels: int | None, backend="cpu") -> float:
    """The divisor that puts a gradient magnitude on the block-max histogram's scale.

    ``max(1, q / levels)``, ``q`` the 99th percentile of the magnitude's
    ``coarseness``-block maxima (an order statistic, the same on every backend).
    ``levels=None`` gives 1 (the article's integer magnitude).

    The article's histogram counts the integer magnitude; on a 16-bit brightfield
    that spreads the block maxima over up to 370,000 values, most past 65,535, and
    its peak says nothing. Scaling so that nearly all block maxima fall within
    ``levels`` bins restores the article's assumption of a populated histogram,
    while an 8-bit image (gradients below ``levels``) keeps the article's bins.
    """
    if levels is None:
        return 1.0
    be = get_backend(backend)
    q = be.order_statistic(be.block_max(magnitude, coarseness), SCALE_QUANTILE)
    return max(1.0, float(q) / levels)


def quantize(magnitude, scale: float = 1.0, backend="cpu"):
    """``floor(magnitude / scale)`` as uint16, saturating at 65,535 (never wrapping).

    Parameters
    ----------
    magnitude : (M, N) float32 array, non-negative
    scale : float, >= 1

    Returns
    -------
    (M, N) uint16 array
    """
    if not scale >= 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return get_backend(backend).quantize(magnitude, scale)
