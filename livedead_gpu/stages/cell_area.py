"""Cell area from brightfield: gradient, threshold, close, fill holes."""

from __future__ import annotations

from typing import NamedTuple

from ..backends import get_backend
from ..params import SegmentParams, as_params
from .gradient import gradient_scale, noise_threshold, padded_gradient, quantize
from .threshold import block_max_threshold


class CellArea(NamedTuple):
    """Result of `cell_area`.

    mask : (M, N) bool array, the cell area
    gradient : (M, N) float32 array, the (smoothed) Sobel magnitude
    threshold : float
        ``"noise"``: foreground is ``gradient > threshold``. ``"block-max"``: the
        integer threshold of the quantised gradient, foreground is
        ``floor(gradient / scale) > threshold``.
    scale : float or None, the gradient's divisor ("block-max" only)
    noise : float or None, the background gradient's Rayleigh scale ("noise" only)
    padding : (M, N) bool array or None, registration padding (`padded_gradient`)
    """

    mask: object
    gradient: object
    threshold: float
    scale: float | None
    noise: float | None
    padding: object = None


def cell_area(brightfield, params: SegmentParams | None = None, backend="cpu", threshold=None, scale=None,
              dim=None) -> CellArea:
    """The area cells cover in a brightfield image.

    Sobel magnitude (after a Gaussian of ``params.smoothing``), thresholded
    (``params.cell_threshold``), ``dilations`` elliptical dilations then
    ``erosions`` erosions, and holes filled: background not connected to the
    image border becomes cell area. (The article floods from pixel (0, 0), which
    fills the wrong region when a cell covers that corner.) Regions of zeros
    (registration padding) are left out, and their edge is no cell edge
    (`padded_gradient`).

    Parameters
    ----------
    brightfield : (M, N) uint8 or uint16 array
    params : SegmentParams, optional
    backend : str or Backend
    threshold, scale : float, optional
        A threshold (and, for "block-max", its gradient scale) computed elsewhere,
        e.g. over a whole mosaic of which ``brightfield`` is one tile; estimated
        from ``brightfield`` when omitted.
    dim : (M, N) bool array, optional
        The edge lines a registration dimmed (`dim_edges` of ``brightfield`` when None).

    Returns
    -------
    CellArea
    """
    be = get_backend(backend)
    area = closed_area(brightfield, params, be, threshold, scale, dim)
    mask = be.fill_holes(area.mask)
    if area.padding is not None:
        mask &= ~area.padding  # no image, so no cell (the closing reaches into it)
    return area._replace(mask=mask)


def closed_area(brightfield, params: SegmentParams | None = None, backend="cpu", threshold=None,
                scale=None, dim=None) -> CellArea:
    """`cell_area` before its holes are filled: the thresholded gradient, dilated and eroded.

    Parameters and thresholds as `cell_area`; ``dim``, the edge lines a registration dimmed, as
    `padded_gradient` (a mosaic's tile gives the whole mosaic's). ``CellArea.mask`` is the closed mask,
    registration padding not cleared from it (``CellArea.padding``): `cell_area`
    fills its holes, then clears the padding; `~livedead_gpu.mosaic.segment_mosaic`
    fills them over the whole mosaic.
    """
    p = as_params(params)
    be = get_backend(backend)
    gradient, padding = padded_gradient(brightfield, p.smoothing, be, dim)
    noise = None
    if p.cell_threshold == "noise":
        if threshold is None:
            threshold, noise = noise_threshold(
                brightfield, gradient, p.coarseness, p.offset, p.smoothing, p.noise_ceiling, be, padding
            )
        scale = None
        mask = be.greater(gradient, threshold)
    else:
        if scale is None:
            scale = gradient_scale(gradient, p.coarseness, p.gradient_levels, be)
        levels = quantize(gradient, scale, be)
        if threshold is None:
            threshold = block_max_threshold(levels, p.offset, p.coarseness, be)
        mask = be.greater(levels, threshold)
    mask = be.dilate(mask, p.kernel_size, p.dilations)
    mask = be.erode(mask, p.kernel_size, p.erosions)
    return CellArea(mask, gradient, threshold, scale, noise, padding)
