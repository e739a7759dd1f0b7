"""Cell area from brightfield: gradient, threshold, close, fill holes."""

from __future__ import annotations

from typing import NamedTuple

from ..backends import get_backend
from ..params import SegmentParams
from .gradient import gradient_scale, quantize, sobel_magnitude
from .threshold import block_max_threshold


class CellArea(NamedTuple):
    """Result of `cell_area`.

    mask : (M, N) bool array, the cell area
    gradient : (M, N) float32 array, the Sobel magnitude
    threshold : int, block-max threshold on the quantised gradient
    scale : float, the gradient's divisor (foreground is ``floor(gradient / scale) > threshold``)
    """

    mask: object
    gradient: object
    threshold: int
    scale: float


def cell_area(brightfield, params: SegmentParams | None = None, backend="cpu") -> CellArea:
    """The area cells cover in a brightfield image.

    Sobel magnitude, put on an integer scale (`gradient_scale`), block-max
    threshold, ``dilations`` elliptical dilations then ``erosions`` erosions, and
    holes filled: background not connected to the image border becomes cell area.
    (The article floods from pixel (0, 0), which fills the wrong region when a
    cell covers that corner.)

    Parameters
    ----------
    brightfield : (M, N) uint8 or uint16 array
    params : SegmentParams, optional
    backend : str or Backend

    Returns
    -------
    CellArea
    """
    p = params or SegmentParams()
    be = get_backend(backend)
    gradient = sobel_magnitude(brightfield, be)
    scale = gradient_scale(gradient, p.coarseness, p.gradient_levels, be)
    levels = quantize(gradient, scale, be)
    threshold = block_max_threshold(levels, p.offset, p.coarseness, be)
    mask = be.greater(levels, threshold)
    mask = be.dilate(mask, p.kernel_size, p.dilations)
    mask = be.erode(mask, p.kernel_size, p.erosions)
    return CellArea(be.fill_holes(mask), gradient, threshold, scale)
