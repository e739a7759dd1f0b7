"""Sobel gradient magnitude of brightfield, and the thresholds of it."""

from __future__ import annotations

import math

import numpy as np

from ..backends import get_backend
from .threshold import grey_levels, grey_step

#: which order statistic of the block maxima sets the gradient scale ("block-max")
SCALE_QUANTILE = 0.99
#: the share of flattest blocks whose mean gradient measures the background ("noise")
FLAT_QUANTILE = 0.05
#: px of image beside a region of zeros counted as padding (`padding_mask`)
PADDING_MARGIN = 2
#: the diameter (px) of the disc a region of zeros must hold to be padding (`padding_mask`)
PADDING_OPENING = 9
#: an edge line whose median is under this share of the next line's is a registration's blend
#: with its padding (`dim_edges`)
DIM_SHARE = 0.9
# median |N(0, 1)|, and the mean of a Rayleigh(1) variable
_MAD = 0.6744897501960817
_RAYLEIGH_MEAN = math.sqrt(math.pi / 2)


def sobel_magnitude(image, backend="cpu"):
    """Sobel gradient magnitude in OpenCV's convention.

    Parameters
    ----------
    image : (M, N) uint8, uint16 or float32 array

    Returns
    -------
    (M, N) float32 array
        ``sqrt(gx**2 + gy**2)`` of the unnormalised 3x3 Sobel derivatives, border
        "reflect 101". Float32, not the article's uint16: a 16-bit image's gradient
        reaches ~370,000, which uint16 cannot hold.
    """
    return get_backend(backend).sobel(image)


def smoothed_gradient(image, smoothing: float, backend="cpu", dim=None):
    """`sobel_magnitude` of the image after a Gaussian of sigma ``smoothing`` (0: none).

    Alignment padding (`padding_mask`, and the edge lines a registration dimmed) is filled
    first and its gradient is 0: see `padded_gradient`.
    """
    return padded_gradient(image, smoothing, backend, dim)[0]


def gradient_reach(smoothing: float) -> int:
    """How far (px) `smoothed_gradient` reads: the Gaussian's radius and Sobel's pixel, then as far
    again twice for the padding's fill, and how far `padding_mask` reads (its opening, or its band
    along the edge, and its margin)."""
    return 3 * _sobel_reach(smoothing) + PADDING_OPENING + PADDING_MARGIN


def _sobel_reach(smoothing: float) -> int:
    """The Gaussian's radius (int(4 sigma + 0.5), as `Backend.gaussian`) and Sobel's pixel."""
    return (int(4 * smoothing + 0.5) if smoothing > 0 else 0) + 1


def padding_mask(image, backend="cpu"):
    """Regions of exact zeros (a registered stack's alignment padding), or None when there are none.

    Zeros opened by a disc 9 px across (`PADDING_OPENING`): padding, or a stitched
    mosaic's missing field, is wider than that, while zero pixels in smaller
    clusters can be image (an 8-bit brightfield's darkest pixels clipped to 0, a dead
    camera row); and every zero within 9 px of the image's edge (a translation's
    margin a few lines wide, the thin tips of a rotation's corners). Grown by
    `PADDING_MARGIN` px. All of it local, so a mosaic's tiles find what the whole
    image finds (the zeros a tile's window edge adds lie in its halo, out of its
    core's reach).

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array

    Returns
    -------
    (M, N) bool array or None
    """
    return padding_of(image == 0, backend)


def dim_edges(image, backend="cpu"):
    """The outer lines of ``image`` that a registration dimmed by blending them with its padding.

    A sub-pixel shift or a small rotation, interpolated onto zeros, leaves few zeros or none,
    but scales the outermost line by the share of each pixel the image still covers. Such a
    line pulled the nucleus stage's background (a grey opening) down along the frame's edge:
    false nuclei there where the Hoechst sits high (a 384² synthetic frame shifted by
    (0.8, 0.8) px, its Hoechst background 0.4 of the nucleus contrast: nucleus F1 0.56, ~60
    false nuclei). Marked: each edge line whose median (over its pixels not 0) is under
    `DIM_SHARE` of the next line's, and the next line too where it is so dimmed against the
    third. Whole lines' medians: texture, noise and a cell at the edge do not move them;
    natural images do not darken by a tenth from one line to the next along a whole edge.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array

    Returns
    -------
    (M, N) bool array
    """
    be = get_backend(backend)
    out = be.xp.zeros(image.shape, bool)
    if min(image.shape) < 3:
        return out
    for line, marks in zip(EDGE_LINES, dim_lines(edge_medians(image, be))):
        for k, mark in enumerate(marks):
            out[line(k)] |= mark
    return out


#: the three outer lines of each edge, as `edge_medians` reads them: top, bottom, left, right
EDGE_SIDES = (np.s_[:3], np.s_[-3:], np.s_[:, :3], np.s_[:, -3:])
#: where `dim_lines`' marks go back: line ``k`` from each edge
EDGE_LINES = (lambda k: np.s_[k], lambda k: np.s_[-1 - k], lambda k: np.s_[:, k], lambda k: np.s_[:, -1 - k])


def dim_lines(medians):
    """`dim_edges` from `edge_medians`: for each edge, whether its edge line and the next are
    dimmed (0-d bools, on the medians' device)."""
    out = []
    for median in medians:
        outer = median[0] < DIM_SHARE * median[1]
        out.append((outer, outer & (median[1] < DIM_SHARE * median[2])))
    return out


def edge_medians(image, backend="cpu", sides=None):
    """For each edge (top, bottom, left, right), the medians of its three outer lines, the edge
    line first ((3,) float32 arrays): the lower median of each line's pixels that are not 0.

    Zeros are padding already (`padding_of`), and a rotation's wedges of them along an edge leave
    the rest of its line whole. Sorted, a line's zeros come first; a line all 0 reads 0.
    ``sides``: the lines already read (``image[e]`` for ``e`` in `EDGE_SIDES`; a mosaic reads
    them from its whole brightfield), ``image`` then unused.
    """
    xp = get_backend(backend).xp
    out = []
    top, bottom, left, right = sides if sides is not None else (image[e] for e in EDGE_SIDES)
    for lines in (top, bottom[::-1], left.T, right[:, ::-1].T):   # each edge's lines as rows, edge first
        n = lines.shape[1]
        zeros = (lines == 0).sum(axis=1)
        at = xp.minimum(zeros + (n - 1 - zeros) // 2, n - 1)
        out.append(xp.take_along_axis(xp.sort(lines, axis=1), at[:, None], axis=1)[:, 0].astype(xp.float32))
    return out


def blend_coverage(medians, backend="cpu") -> tuple:
    """How much of its edge pixels a sub-pixel registration left the image covering, in y and in x.

    A shift by ``f`` px interpolated (bilinear) onto zeros covers ``1 - f`` of the edge line it
    moved in from, and blends every pixel with its neighbour by ``(1 - f, f)``: that smoothing
    lowers the camera noise Immerkær's filter reads far more than the gradient's own
    (`noise_from_statistics`). Read from the dimmed edge lines (`dim_edges`): an edge line's
    median over the next line's, or, beside a line of zeros (whole-pixel padding, kept by
    `checks.box_inside`), the next line's over the third's. 1.0 where no edge is so dimmed.

    Parameters
    ----------
    medians : `edge_medians`

    Returns
    -------
    (float, float)
    """
    be = get_backend(backend)
    xp = be.xp
    medians = be.to_host(xp.stack(medians))  # 12 numbers to the host
    out = []
    for edges in (medians[:2], medians[2:]):   # y: top and bottom; x: left and right
        share = 1.0
        for m in edges:
            outer, inner = (m[1], m[2]) if m[0] == 0 else (m[0], m[1])
            if inner > 0 and outer < DIM_SHARE * inner:
                share = min(share, float(outer / inner))
        out.append(share)
    return tuple(out)


def frame_padding(brightfield, *stains, backend="cpu", dim=None):
    """`padding_mask` of the pixels 0 in every channel of a frame, or None.

    Registration pads every channel of a frame alike. The nuclear stains alone do not
    tell padding from a background clipped or subtracted to 0 (wide regions of zeros
    there are image: their nuclei must keep their own background), while a real
    brightfield is 0 nowhere else; so the frame's padding is where all are 0, and the
    brightfield's outer lines a registration dimmed (`dim_edges`).

    Parameters
    ----------
    brightfield, *stains : (M, N) uint8 or uint16 arrays
    dim : (M, N) bool array, optional
        `dim_edges` of ``brightfield``, if already found.

    Returns
    -------
    (M, N) bool array or None
    """
    be = get_backend(backend)
    zero = brightfield == 0
    # A registration's blend with its zeros dims every channel alike; the brightfield, bright
    # everywhere, shows it (a stain's dark background would be noise).
    if dim is None:
        dim = dim_edges(brightfield, be)
    if not be.to_host(zero.any() | dim.any()):  # one bool to the host: most frames stop here
        return None
    for stain in stains:
        zero &= stain == 0
    return padding_of(zero | dim, be)


def padding_of(zero, backend="cpu"):
    """`padding_mask` of a mask of zero pixels ``zero`` ((M, N) bool array), or None."""
    be = get_backend(backend)
    if not be.to_host(zero.any()):  # one bool to the host; most frames have no zero
        return None
    padding = be.dilate(be.erode(zero, PADDING_OPENING), PADDING_OPENING)
    # Near the edge, where registration pads from, every zero: a margin a few lines wide, and
    # the thin tips of a rotation's corners, are narrower than the opening's disc.
    k = PADDING_OPENING
    for edge in (np.s_[:k], np.s_[-k:], np.s_[:, :k], np.s_[:, -k:]):
        padding[edge] |= zero[edge]
    # Grown by 2 px: a registration that interpolates (bilinear, bicubic) blends the
    # image with the zeros over 1-2 px, a ramp down to 0 that is no cell edge either.
    padding = be.dilate(padding, 1 + 2 * PADDING_MARGIN)
    return padding if be.to_host(padding.any()) else None  # one more bool, padded frames only


def padded_gradient(image, smoothing: float, backend="cpu", dim=None):
    """`smoothed_gradient`, and the padding it set aside.

    Registration pads a shifted or rotated frame with zeros; the step from image to
    0 is no cell edge, yet its gradient would put a band of cell area along every
    padded edge (a rigidly registered frame: two thirds of the pixels within 7 px
    of a rotated corner). A sub-pixel shift leaves a dimmed edge line instead
    (`dim_edges`), whose step did the same (a 512² frame shifted 0.3 px: its 4 outer
    columns all cell area). Each padding pixel within reach of the image is first
    set to the mean of the image pixels in the ``4 * reach + 1`` square around it
    (rounded; `Backend.box_sums`, exact on every backend), so the image
    continues past its edge at its local level, and the gradient is 0 on the
    padding itself (no data, no edge).

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array
    smoothing : float
    dim : (M, N) bool array, optional
        The dimmed edge lines; `dim_edges` of ``image`` when None. A mosaic's tile gives
        the whole mosaic's (a tile's own outer lines are no image edge).

    Returns
    -------
    gradient : (M, N) float32 array
    padding : (M, N) bool array or None
        `padding_of` the zeros of ``image`` and the dimmed lines.
    """
    be = get_backend(backend)
    padding = None
    if image.dtype.kind == "u":
        padding = padding_of((image == 0) | (dim_edges(image, be) if dim is None else dim), be)
    if padding is None:
        return be.gradient(image, smoothing), None
    xp = be.xp
    # A window twice the gradient's reach each way: a padding pixel that the gradient of
    # an image pixel reads (within the reach) takes the mean of at least `reach` rows or
    # columns of image, not of a few noisy pixels at the window's edge.
    size = 4 * _sobel_reach(smoothing) + 1
    image_only = xp.where(padding, image.dtype.type(0), image)
    sums = be.box_sums(image_only, size)
    counts = be.box_sums((~padding).view(xp.uint8), size)
    mean = xp.rint(sums / xp.maximum(counts, 1))
    filled = xp.where(padding, mean.astype(image.dtype), image)
    gradient = be.gradient(filled, smoothing)
    xp.copyto(gradient, xp.float32(0), where=padding)
    return gradient, padding


def _gaussian_taps(smoothing: float):
    if smoothing > 0:
        radius = int(4 * smoothing + 0.5)
        x = np.arange(-radius, radius + 1)
        g = np.exp(-0.5 * (x / smoothing) ** 2)
        return g / g.sum()
    return np.ones(1)


def noise_gains(smoothing: float, coverage=(1.0, 1.0)) -> tuple:
    """The gains of white noise through Immerkær's residual filter and through one Sobel derivative
    (after the Gaussian), when a sub-pixel shift has blended each pixel with its neighbour first.

    ``coverage``: (y, x) as `blend_coverage` reads them; the blend's 1-D kernel is ``(c, 1 - c)``.
    For (1, 1) (no blend): ``(6, sobel_noise_gain(smoothing))``, the white-noise gains. The Sobel
    gain is the root mean square of the two derivatives' (a blend in one direction only smooths
    them unequally).

    Returns
    -------
    (float, float)
    """
    coverage = tuple(float(c) if 0 < c < 1 else 1.0 for c in coverage)   # 0 or 1: no blend
    if coverage == (1.0, 1.0):
        return 6.0, sobel_noise_gain(smoothing)
    ky, kx = (np.array([c, 1 - c]) if c < 1 else np.ones(1) for c in coverage)
    lap = np.array([1.0, -2.0, 1.0])
    residual = float(np.linalg.norm(np.convolve(lap, ky)) * np.linalg.norm(np.convolve(lap, kx)))
    g = _gaussian_taps(smoothing)
    smooth, diff = np.convolve(g, [1, 2, 1]), np.convolve(g, [-1, 0, 1])
    sx = np.linalg.norm(np.convolve(smooth, ky)) * np.linalg.norm(np.convolve(diff, kx))
    sy = np.linalg.norm(np.convolve(smooth, kx)) * np.linalg.norm(np.convolve(diff, ky))
    return residual, float(math.sqrt((sx * sx + sy * sy) / 2))


def sobel_noise_gain(smoothing: float) -> float:
    """Standard deviation of one Sobel derivative of unit white noise, after the Gaussian.

    The derivative kernel is separable (a smoothing [1, 2, 1] one way, a difference
    [-1, 0, 1] the other, each convolved with the Gaussian), so its L2 norm is the
    product of the two 1-D norms: ``sqrt(12)`` without smoothing.
    """
    g = _gaussian_taps(smoothing)
    return float(np.linalg.norm(np.convolve(g, [1, 2, 1])) * np.linalg.norm(np.convolve(g, [-1, 0, 1])))


def noise_threshold(brightfield, gradient, coarseness: int, offset: float | None, smoothing: float,
                    ceiling: float, backend="cpu", padding=None):
    """The article's threshold on the gradient, its peak taken from the noise floor.

    The article's peak ``k`` is the most common block maximum: in a field that is
    mostly background, the largest gradient the background noise reaches in a
    block. Here ``k`` is that value computed from the noise itself:

    - camera noise ``sigma`` from Immerkær's Laplacian-difference filter, in its
      robust form (median of ``|I * N| / 6`` over every 4th pixel, divided by 0.6745),
      floored at the quantisation noise ``q / sqrt(12)``, ``q`` the image's grey
      step (`grey_step`: 1, or e.g. 16 for 12-bit data shifted into 16 bits);
    - for white noise each Sobel derivative has s.d. ``s = gain * sigma``
      (`sobel_noise_gain`) and the magnitude is Rayleigh(``s``); camera noise is
      not quite white, so ``s`` is measured as well, as the mean gradient of the
      flattest 5% of ``coarseness`` blocks over ``sqrt(pi / 2)``, and capped at
      ``ceiling * gain * sigma`` (confluent fields have no flat block);
    - ``k`` is the median maximum of ``coarseness**2`` Rayleigh(``s``) pixels,
      ``s * sqrt(-2 ln(1 - 2**(-1 / coarseness**2)))`` (3.44 s for 16-px blocks).

    The threshold is then the article's ``offset * k`` (pixels strictly above are
    foreground). Blocks and pixels of value 0 (alignment padding, no data) are left
    out of both estimates, and blocks that hold any of ``padding`` (where the gradient
    was set to 0) out of the flat blocks.

    Parameters
    ----------
    brightfield : (M, N) uint8 or uint16 array
    gradient : (M, N) float32 array, `smoothed_gradient` of ``brightfield``
    coarseness : int
    offset : float or None
    smoothing : float
        The sigma ``gradient`` was smoothed with.
    ceiling : float
    padding : (M, N) bool array, optional
        `padded_gradient`'s padding.

    Returns
    -------
    threshold : float
    noise : float, the Rayleigh scale ``s`` of the background gradient
    """
    be = get_backend(backend)
    median = residual_median(brightfield, be)
    grid = brightfield[2:-2:4, 2:-2:4]
    means = be.block_mean(gradient, coarseness)
    holds = noise_blocks(brightfield, coarseness, be, padding)[: means.shape[0], : means.shape[1]]
    flat = _masked_quantile(be, means, holds, FLAT_QUANTILE)
    coverage = blend_coverage(edge_medians(brightfield, be), be) if min(brightfield.shape) >= 3 else (1.0, 1.0)
    return noise_from_statistics(median, flat, coarseness, offset, smoothing, ceiling, grey_step(grey_levels(grid, be)),
                                 coverage)


def residual_median(brightfield, backend="cpu") -> float:
    """The median of Immerkær's Laplacian-difference residual ``|I * N|`` over every 4th pixel
    (row and column) that is not 0: ``6 * 0.6745`` camera-noise sigmas for white noise.

    Parameters
    ----------
    brightfield : (M, N) uint8 or uint16 array, M, N >= 5

    Returns
    -------
    float (``inf`` when every sampled pixel is 0)
    """
    be = get_backend(backend)
    xp = be.xp
    f = brightfield.astype(xp.float32)
    # The separable [1, -2, 1] x [1, -2, 1] filter at every 4th row and column.
    rows = f[1:-3:4] - 2 * f[2:-2:4] + f[3:-1:4]
    residual = xp.abs(rows[:, 1:-3:4] - 2 * rows[:, 2:-2:4] + rows[:, 3:-1:4])
    return _masked_quantile(be, residual, brightfield[2:-2:4, 2:-2:4] > 0, 0.5)


def noise_blocks(brightfield, coarseness: int, backend="cpu", padding=None):
    """Which ``coarseness`` blocks can show the camera noise: those with no pixel 0 (nor of
    ``padding``, a bool array, where the gradient was set to 0) and not all one value.

    A block holding a 0 is (partly) alignment padding; a block of one value, clipped
    (a region overexposed to the camera's maximum) or padding, has a gradient of 0
    that is no noise at all: with such blocks past `FLAT_QUANTILE` of a field, the
    flat blocks' gradient, and so the threshold, would be 0 and the whole field cell.

    Parameters
    ----------
    brightfield : (M, N) uint8, uint16 or float32 array
    coarseness : int

    Returns
    -------
    (ceil(M / coarseness), ceil(N / coarseness)) bool array
    """
    be = get_backend(backend)
    xp = be.xp
    zero = brightfield == 0
    if padding is not None:
        zero |= padding
    no_zero = be.block_max(zero.view(xp.uint8), coarseness) == 0
    # The block minimum as the maximum of the complement (~x is max - x for unsigned).
    flip = ~brightfield if brightfield.dtype.kind == "u" else -brightfield
    low = be.block_max(flip, coarseness)
    low = ~low if brightfield.dtype.kind == "u" else -low
    return no_zero & (be.block_max(brightfield, coarseness) != low)


def noise_from_statistics(residual: float, flat: float, coarseness: int, offset: float | None, smoothing: float,
                          ceiling: float, grey: int = 1, coverage=(1.0, 1.0)):
    """`noise_threshold` from its two order statistics, however they were gathered (e.g. over a mosaic's tiles).

    Parameters
    ----------
    residual : float
        The median of the Laplacian-difference residual over the every-4th-pixel grid.
    flat : float
        The `FLAT_QUANTILE` of the ``coarseness``-block means of the gradient.
    coarseness, offset, smoothing, ceiling
        As `noise_threshold`.
    grey : int
        The image's `grey_step` over the same pixels as ``residual``.
    coverage : (float, float)
        `blend_coverage` of the image: a sub-pixel registration's blend, which the noise's
        gains through the residual and the Sobel filters account for (`noise_gains`).

    Returns
    -------
    threshold : float
    noise : float
    """
    lap, sobel = noise_gains(smoothing, coverage)
    sigma = residual / (lap * _MAD)
    white = sobel * max(sigma, grey / math.sqrt(12))
    noise = min(flat / _RAYLEIGH_MEAN, ceiling * white)

    n = coarseness * coarseness
    k = noise * math.sqrt(-2 * math.log(1 - 0.5 ** (1 / n)))
    return (k if offset is None else offset * k), noise


def _masked_quantile(be, values, keep, fraction):
    """`Backend.order_statistic` over the kept values only (``inf`` when none is kept)."""
    xp = be.xp
    # Dropped values go to +inf, past every kept one, and the rank counts kept ones only.
    kept = int(be.to_host(keep.sum()))  # one scalar to the host
    if kept == 0:
        return math.inf
    flat = xp.where(keep, values, xp.inf).ravel()
    k = int(fraction * (kept - 1))
    return float(be.to_host(xp.partition(flat, k)[k]))


def gradient_scale(magnitude, coarseness: int, levels: int | None, backend="cpu") -> float:
    """For the "block-max" cell threshold: the divisor that puts a gradient on the histogram's scale.

    ``max(1, q / levels)``, ``q`` the 99th percentile of the magnitude's
    ``coarseness``-block maxima (an order statistic, the same on every backend).
    ``levels=None`` gives 1 (the article's integer magnitude).

    The article's histogram counts the integer magnitude; on a 16-bit brightfield
    that spreads the block maxima over up to 370,000 values, most past 65,535, and
    its peak says nothing. Scaling so that nearly all block maxima fall within
    ``levels`` bins restores a populated histogram, while an 8-bit image (gradients
    below ``levels``) keeps the article's bins.
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
