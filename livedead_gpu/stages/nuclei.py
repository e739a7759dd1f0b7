"""Hoechst and Draq7 nucleus masks, and the labelled nuclei with their live/dead call.

Two nucleus thresholds (``SegmentParams.nucleus_threshold``):

- ``"block-max"``: the article's threshold of the raw image. It assumes most
  16-px blocks are background; with nuclei of 100 px, or an uneven background, or
  a field half covered, the peak lands elsewhere (object F1 0.24 on the Coelho set).
- ``"contrast"`` (default, `contrast_mask`): the background is estimated at the
  scale of the nuclei and subtracted (a grey opening by a square 1.5 nucleus
  diameters wide, then a box mean of the same width: a rolling-ball-like
  "top-hat" that removes glow and uneven illumination but not a nucleus), then the
  threshold is ``b + level * (L - b)``: ``b`` the corrected image's 25th
  percentile (background in any field less than 3/4 covered), ``L`` the median of
  the pixels clearly above it (over ``b + 6 sigma``, sigma the robust noise of the
  darker half), i.e. the typical nucleus, so a few saturated cells or debris do not
  move it (Otsu's threshold lands between them and the nuclei on 9 of 17 ic100
  images). Holes are filled and objects under a tenth of a nucleus' area dropped.
  Then each nucleus is cut at ``nucleus_edge`` (half) of its local mean contrast
  (`cut_edges`): one threshold for dim and bright nuclei leaves the bright ones a
  skirt of blur; this gives each its own half-height edge.
  The nucleus diameter comes from the parameters (µm with the pixel size, or px)
  or is measured on the image (`typical_diameter`), so the same parameters hold on
  sparse and dense fields and at any magnification.

Every step is generic ``be.xp`` code or a backend method, so it runs on every backend.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from ..backends import get_backend
from ..checks import warn
from ..params import SegmentParams, as_params
from .threshold import block_max_threshold, grey_levels, grey_step


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
    mask, threshold, *_ = _nucleus_mask(image, as_params(params), get_backend(backend))
    return mask, threshold


class _Mask(NamedTuple):
    """`_nucleus_mask`'s result: the mask, its threshold, the nucleus diameter (px) of the
    "contrast" threshold (else the parameters'), the sigma of the Gaussian it was taken after,
    and the mask before `cut_edges` cut it (``mask`` itself where nothing was cut)."""

    mask: object
    threshold: float
    diameter: float | None
    smoothing: float
    lit: object = None


def _nucleus_mask(image, p, be, threshold=None, diameter=None, padding=None) -> _Mask:
    """`nucleus_mask`, and the nucleus diameter and smoothing it used.

    ``threshold`` and ``diameter``, when given, were computed elsewhere (e.g. over a
    whole mosaic of which ``image`` is one tile) and replace the image's own.
    ``padding`` ((M, N) bool array or None): alignment padding, no data
    (`~livedead_gpu.stages.gradient.frame_padding`); the "contrast" threshold
    neither reads it nor finds nuclei in it. The other thresholds, the article's,
    take the image as it is.
    """
    image = smoothed_stain(image, p, be)
    if p.nucleus_threshold == "contrast":
        return _contrast(image, p, be, threshold, diameter, stain_padding(padding, stain_sigma(p), be))
    if threshold is None and p.nucleus_threshold == "block-max":
        threshold = block_max_threshold(image, p.offset, p.coarseness, be)
    elif threshold is None:
        threshold = p.nucleus_threshold
    mask = _drop_small(be.close(be.greater(image, threshold), p.nucleus_kernel), p.min_nucleus_area, be)
    return _Mask(mask, threshold, p.diameter_px if diameter is None else diameter, stain_sigma(p), mask)


#: The Gaussian ``nucleus_smoothing="auto"`` puts on dim Hoechst (`_contrast`, `_DIM`).
AUTO_SMOOTHING = 1.0


def stain_sigma(p) -> float:
    """The sigma `smoothed_stain` applies: ``p.nucleus_smoothing``, 0 for "auto" (until `_contrast` decides)."""
    return 0.0 if p.nucleus_smoothing == "auto" else float(p.nucleus_smoothing)


def smoothed_stain(image, p, be):
    """A nuclear stain after the Gaussian of ``p.nucleus_smoothing`` (``image`` when 0 or "auto").

    Rounded back to the image's integer type, so every statistic after it (exact
    window sums, block-max histograms) stays exact, on every backend and in every
    tile of a mosaic.
    """
    sigma = stain_sigma(p)
    if not sigma:
        return image
    xp = be.xp
    top = xp.float32(xp.iinfo(image.dtype).max)
    return xp.rint(xp.minimum(be.gaussian(image, sigma), top)).astype(image.dtype)


def stain_padding(padding, sigma, be):
    """The padding of a stain after `smoothed_stain`'s Gaussian of ``sigma``: grown by 2 sigma
    (rounded), over which the Gaussian spreads the padding's zeros into the image (at most
    3e-5 of them past it, with the padding's own 2-px margin)."""
    grow = int(2 * sigma + 0.5)
    if padding is None or not grow:
        return padding
    return be.dilate(padding, 2 * grow + 1)


def labelled(labels, xp):
    """Flat indices of the pixels of ``labels`` over 0 (a sync on CuPy, for the count).

    Found in ``labels > 0``, not in ``labels``: NumPy finds the nonzero entries of a
    bool array several times faster than those of an int32 one (a 2048² frame's
    nucleus labels: 1.4 against 7.6 ms).
    """
    return xp.flatnonzero(labels > 0)


def _objects(mask, be):
    """The 8-connected objects of a mask, from its pixels only (a few % of a frame).

    Returns
    -------
    where : (k,) int array, the mask's flat pixel indices (on CuPy its size is one sync)
    owner : (k,) int32 array, their object labels 1..n
    areas : (n + 1,) int array, pixels per label (``areas[0]`` is 0)
    """
    labels, n = be.label(mask, ordered=False)  # only counted: any numbering
    where = be.xp.flatnonzero(mask)
    owner = labels.ravel()[where]
    return where, owner, be.votes(owner, n + 1)


def _drop_small(mask, min_area, be, relative=None, advice=None):
    """Drop the 8-connected objects of fewer than ``min_area`` pixels.

    ``relative``, the size filter's area without the absolute ``min_nucleus_area``
    floor: when that floor drops over a quarter of the objects the relative filter
    keeps (nuclei under the floor, e.g. at low magnification), say so: a
    ``UserWarning``, or appended to the list ``advice`` when given (a mask that may
    be discarded, e.g. the unsmoothed one "auto" smooths instead).
    """
    if min_area <= 1:
        return mask
    where, owner, areas = _objects(mask, be)
    small = areas < min_area
    if relative is not None and relative < min_area:
        xp = be.xp
        counted = areas >= relative
        # Two counts to the host (one sync), only when the absolute floor is the filter.
        kept, lost = (int(v) for v in be.to_host(xp.stack([counted.sum(), (counted & small).sum()])))
        if lost >= 5 and lost > kept / 4:
            # The text does not vary with the frame, so a plate run says it once.
            text = (f"min_nucleus_area = {min_area} px drops over a quarter of the nuclei found (they are "
                    "smaller): lower it, or give min_nucleus_area_um2 with pixel_size")
            if advice is None:
                warn(text, UserWarning, stacklevel=4)
            else:
                advice.append(text)
    mask = mask.copy()
    # The few pixels of the small objects (a boolean index: a sync on CuPy; scattering
    # ~small[owner] over every object pixel instead costs the CPU more than the sync saves).
    mask.ravel()[where[small[owner]]] = False
    return mask


# -- the "contrast" threshold --------------------------------------------------------

_NOISE_SIGMAS = 6.0    # pixels this many noise sigmas over the background are "clearly nucleus"
_POPULATION = 8.0      # ... when their median lies this many sigmas over it, else they are noise
_BACKGROUND_WIDTH = 1.5  # background window, in nucleus diameters
_FIRST_WIDTH = 2.5     # background window of the diameter's second estimate
_MIN_FRACTION = 0.1    # size filter: this fraction of the area of a disc of the diameter
_SPECK_FRACTION = 0.1  # diameter estimate: objects under this fraction of the 90th-percentile area left out
_FALLBACK_DIAMETER = 12.0


def contrast_mask(image, params: SegmentParams | None = None, backend="cpu"):
    """Nucleus mask by the "contrast" threshold (see the module notes).

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array (on the backend's device)
    params : SegmentParams, optional
        ``nucleus_level``, the nucleus diameter (``nucleus_diameter`` with
        ``pixel_size``, or ``nucleus_diameter_px``, else measured),
        ``min_nucleus_area_um2`` / ``min_nucleus_area``, ``nucleus_kernel``.

    Returns
    -------
    mask : (M, N) bool array
    threshold : float
        Over the subtracted background (not a raw intensity).
    """
    p = as_params(params)
    be = get_backend(backend)
    mask, threshold, *_ = _contrast(smoothed_stain(image, p, be), p, be)
    return mask, threshold


def _contrast(image, p, be, threshold=None, diameter=None, padding=None) -> _Mask:
    """`contrast_mask`, and the nucleus diameter (px) and smoothing it used.

    ``threshold`` (over the subtracted background) and ``diameter``, when given,
    replace the ones measured on ``image``. With ``nucleus_smoothing="auto"`` the
    threshold must be measured here (it decides the smoothing). ``padding``: see
    `_nucleus_mask`.
    """
    if p.nucleus_smoothing == "auto" and threshold is not None:
        raise ValueError("nucleus_smoothing='auto' is decided with the Hoechst threshold; with a threshold "
                         "given, give the smoothing it was measured with (thresholds['hoechst_smoothing'])")
    x = image.astype(be.xp.float32)
    given = diameter
    if diameter is None:
        diameter = p.diameter_px
    grey = image_step(image, be, padding) if threshold is None or diameter is None else 1
    if diameter is None:
        diameter = contrast_diameter(image, p, be, x, grey=grey, padding=padding)
    y = contrast_image(image, _BACKGROUND_WIDTH * diameter, be, x, padding)
    dim = False
    if threshold is None:
        b, sigma, top = _contrast_statistics(y, be, grey=grey, padding=padding)
        threshold = _level(b, sigma, top, p.nucleus_level, final=True)
        dim = looks_dim(b, sigma, top, p, image.size)
    # The size filter's advice waits until the mask is kept.
    said = []
    mask, lit = _threshold_mask(y, threshold, diameter, p, be, said)
    # A second look, on dim or empty fields only: a few bright nuclei among the noise
    # (a sparse field) need no smoothing, which would raise the background's texture;
    # nor does a field that smoothing shows no nuclei in either.
    if dim and not bright_objects(mask, y, b, sigma, be):
        lifts, smooth, measured = _smoothed_look(image, p, be, padding)
        if lifts and p.nucleus_smoothing != "auto":
            warn(DIM_WARNING, UserWarning, stacklevel=3)
        elif lifts:
            # The smoothed stain and its diameter as that look measured them.
            return _contrast(smooth, dataclasses.replace(p, nucleus_smoothing=AUTO_SMOOTHING), be,
                             diameter=measured if given is None else given,
                             padding=stain_padding(padding, AUTO_SMOOTHING, be))
    for text in said:
        warn(text, UserWarning, stacklevel=3)
    return _Mask(mask, threshold, diameter, stain_sigma(p), lit)


def _threshold_mask(y, threshold, diameter, p, be, advice=None):
    """The nuclei of the contrast ``y`` over ``threshold``: closed, filled, cut at their
    edges (``p.nucleus_edge``), the small ones dropped (advice: as `_drop_small`'s); and
    the mask before that cut (the same array without ``nucleus_edge``)."""
    min_area, relative = _min_area(p, diameter), _min_area(p, diameter, floor=False)
    lit = _drop_small(be.fill_holes(be.close(y > threshold, p.nucleus_kernel)), min_area, be,
                      relative=None if p.nucleus_edge else relative, advice=advice)
    mask = lit
    if p.nucleus_edge:
        mask = cut_edges(lit, y, threshold, p.nucleus_edge, diameter, be)
        mask = _drop_small(be.fill_holes(mask), min_area, be, relative=relative, advice=advice)
    return mask, lit


def cut_edges(mask, contrast, threshold, edge, diameter, backend="cpu"):
    """The nuclei of ``mask`` cut at ``edge`` times the local nucleus contrast (never below ``threshold``).

    The local nucleus contrast is the mean of ``contrast`` over the mask's pixels
    within the centred square one nucleus ``diameter`` wide: each nucleus' own
    brightness, even within a cluster of touching ones (a mean over a whole
    connected cluster would not be, and would reach across any tile of a mosaic).
    The mean is of the contrast rounded to 1/16 grey level, by exact integer window
    sums (`Backend.box_sums`), so every backend and every tile cuts the same pixels.

    Parameters
    ----------
    mask : (M, N) bool array
    contrast : (M, N) float32 array, the image over its background
    threshold, edge : float
    diameter : float, the nucleus diameter in px

    Returns
    -------
    (M, N) bool array, within ``mask``
    """
    be = get_backend(backend)
    xp = be.xp
    w = window(diameter, mask.shape)
    if w < 3:
        return mask
    sums = be.box_sums(xp.rint(contrast * xp.float32(16)).astype(xp.int32) * mask, w)
    counts = be.box_sums(mask.view(xp.uint8), w)
    # The level at the mask's pixels only (a few % of a frame; flatnonzero syncs on CuPy).
    where = xp.flatnonzero(mask)
    level = (edge / 16) * sums.ravel()[where].astype(xp.float64) / xp.maximum(counts.ravel()[where], 1)
    out = xp.zeros(mask.shape, bool)  # C-ordered, whatever ``mask`` is: written through ravel()
    # Scattered whole: a boolean selection where[keep] would sync on CuPy.
    out.ravel()[where] = contrast.ravel()[where] > xp.maximum(level, threshold)
    return out


def window(width, shape=None) -> int:
    """The odd side (>= 3) of a ``width``-px window, at most ``shape``'s shorter side (then maybe 1)."""
    w = max(3, int(width) | 1)
    if shape is None:
        return w
    return min(w, 2 * (min(shape) // 2) - 1) if min(shape) > 2 else 1


def contrast_diameter(image, params: SegmentParams | None = None, backend="cpu", x=None, grey=None,
                      padding=None) -> float:
    """The nucleus diameter (px) the "contrast" threshold measures when the parameters give none.

    Two rounds of `typical_diameter` of the filled mask at `_contrast_level`: first
    of the raw image, then after subtracting a background 2.5 of those diameters wide.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 array
        The stain as the threshold sees it: after `smoothed_stain` when
        ``params.nucleus_smoothing`` is set.
    x : (M, N) float32 array, optional
        ``image`` as float32, when the caller has it already.
    grey : int, optional
        ``image``'s `image_step`, when the caller has it already.
    padding : (M, N) bool array, optional
        Alignment padding, not read (see `_nucleus_mask`).
    """
    p = as_params(params)
    be = get_backend(backend)
    x = image.astype(be.xp.float32) if x is None else x
    grey = image_step(image, be, padding) if grey is None else grey
    level = _contrast_level(x, p.nucleus_level, be, grey=grey, padding=padding)
    diameter = typical_diameter(be.fill_holes(x > level), be, p.min_nucleus_area)
    y = contrast_image(image, _FIRST_WIDTH * diameter, be, x, padding)
    level = _contrast_level(y, p.nucleus_level, be, grey=grey, padding=padding)
    return typical_diameter(be.fill_holes(y > level), be, p.min_nucleus_area)


def _min_area(p, diameter, floor=True) -> int:
    """The "contrast" size filter in pixels: ``min_nucleus_area_um2``, else a tenth of a nucleus;
    at least ``min_nucleus_area`` unless ``floor=False``."""
    if p.min_nucleus_area_um2 is not None:
        min_area = p.min_nucleus_area_um2 / p.pixel_size**2
    else:
        min_area = _MIN_FRACTION * math.pi * diameter**2 / 4
    return max(p.min_nucleus_area if floor else 1, math.ceil(min_area))


def _contrast_level(y, level, be, *, sampled=False, final=False, grey=1, padding=None):
    """``b + level * (L - b)``: b the 25th percentile, L the median of the pixels over b + 6 sigma.

    With ``final=True`` (the nucleus threshold itself, not a diameter estimate's)
    ``b + 8 sigma`` when L lies under that: see below.

    The statistics (`_contrast_statistics`) are taken over every `contrast_step`-th
    row and column (every 4th below 2048², sparser above: 65,536 to 262,144
    pixels): a sixteenth of the sorting or less, and for these robust statistics no real
    difference (label-quality figures moved by at most 0.013). With
    ``sampled=True`` ``y`` is those pixels already (any shape and order, e.g.
    gathered from the tiles of a mosaic). ``grey`` is the image's `image_step`;
    ``padding`` is left out of the sample.
    """
    return _level(*_contrast_statistics(y, be, sampled, grey, padding), level, final)


def _level(b, sigma, top, level, final):
    """`_contrast_level` from its statistics."""
    if final and top - b < _POPULATION * sigma:
        # The bright pixels are the noise's own tail (no nuclei, or too few to outnumber
        # it): cut above that tail, not 0.35 of the way into it, where the noise makes
        # hundreds of specks. Real fields measured 9.3 sigma and up, noise 6.2-6.5. (The
        # diameter's rounds keep the plain level: on raw, unflattened images it can sit lower.)
        return float(b + _POPULATION * sigma)
    return float(b + level * (top - b))


def contrast_step(shape) -> int:
    """The row and column step of `_contrast_level`'s sample of an image of ``shape``.

    4 below 2048² pixels, then 4 times the integer root of the area in 1024²
    frames (8 at 2048², 16 at 4096²): 65,536 to 262,144 samples whatever the size,
    so a 20,000² mosaic's tiles send the driver ~300 kB, not a sixteenth of it.
    """
    return 4 * max(1, math.isqrt(shape[0] * shape[1] // (1 << 20)))


def image_step(image, be, padding=None) -> int:
    """`grey_step` of a nuclear stain, from the grid `_contrast_statistics` samples (less ``padding``,
    whose margin a registration blends off the image's grey levels)."""
    return grey_step(grey_levels(contrast_sample(image, be, padding), be))


def contrast_sample(image, be, padding=None):
    """``image``'s pixels on `_contrast_statistics`' grid, less ``padding``'s: a 2-D view without
    padding, a 1-D copy with it (a boolean index: a sync on CuPy, on padded frames only); all
    of the grid when the padding covers it."""
    step = contrast_step(image.shape)
    grid = image[::step, ::step]
    if padding is None:
        return grid
    kept = grid[~padding[::step, ::step]]
    return kept if kept.size else grid


def _contrast_statistics(y, be, sampled=False, grey=1, padding=None):
    """``(b, sigma, L)`` of `_contrast_level`: the 25th percentile, the robust noise sigma
    of the darker half (at least ``grey``, the image's `image_step`), the median of the
    pixels over ``b + 6 sigma``; ``padding``'s pixels left out."""
    xp = be.xp
    if not sampled:
        y = contrast_sample(y, be, padding)
    b, mid = be.order_statistics(y, (0.25, 0.5))
    low = y[y <= mid]  # the darker half (a sync for its size on CuPy)
    centre = be.order_statistic(low, 0.5)
    # Robust sigma (MAD) of the darker half; at least one grey level of the data (a flat
    # background's MAD is 0).
    sigma = max(1.4826 * be.order_statistic(xp.abs(low - xp.float32(centre)), 0.5), float(grey))
    bright = y[y > b + _NOISE_SIGMAS * sigma]  # a sync for its size on CuPy, as above
    top = be.order_statistic(bright, 0.5) if bright.size else b + _NOISE_SIGMAS * sigma
    return b, sigma, top


#: `_contrast` smooths ("auto") or warns (0) when the nuclei stand under `_DIM` noise sigmas
#: over the background (real fields measured 9.3 and up), the objects found are not a few
#: bright ones (`bright_objects`), and a 1-px Gaussian lifts them `_DIM_SMOOTHED` over its own
#: (noise alone: 6.3-6.5 either way; nuclei of 3 sigmas a pixel: 7.9 raw, 13 smoothed).
_DIM = 9.0
_DIM_SMOOTHED = 10.0
_DIM_MIN_PIXELS = 128 * 128  # smaller fields: too few samples to tell (16 x 16 uniform noise read 10+)
DIM_WARNING = ("Hoechst nuclei stand under 9 noise sigmas over the background, too dim to threshold pixel by "
               "pixel: nucleus_smoothing = 1 (or 'auto', the default) finds them (benchmarks/README.md, "
               "'Dim, noisy Hoechst')")


def looks_dim(b, sigma, top, p, size) -> bool:
    """Whether the "contrast" statistics ``(b, sigma, top)`` of a Hoechst image of ``size`` px,
    thresholded unsmoothed (``nucleus_smoothing`` 0 or "auto"), show nuclei under `_DIM`
    noise sigmas: the first of `_contrast`'s three tests for smoothing by `AUTO_SMOOTHING`."""
    return not stain_sigma(p) and top - b < _DIM * sigma and size >= _DIM_MIN_PIXELS


#: A dim-looking field whose objects stand, at their median, this many noise sigmas over
#: the background holds a few bright nuclei (too few to outnumber the noise's bright tail
#: in `_contrast_statistics`), not dim ones: sparse synthetic fields of 1-3 nuclei measured
#: 78-117, dim synthetic and noisy Coelho fields 2.9-16 (benchmarks/README.md, "Noisy Hoechst").
_BRIGHT = 20.0


def bright_objects(mask, y, b, sigma, be) -> bool:
    """Whether the median object of ``mask`` has a mean ``y`` `_BRIGHT` ``sigma`` over ``b``.

    Parameters
    ----------
    mask : (M, N) bool array
        The nuclei found by thresholding ``y``.
    y : (M, N) float32 array
        The Hoechst contrast (over its background), unsmoothed.
    b, sigma : float
        Its 25th percentile and noise sigma (`_contrast_statistics`).

    Returns
    -------
    bool
        False when ``mask`` is empty.
    """
    where, owner, areas = _objects(mask, be)
    if areas.size == 1:
        return False
    # Sums of the contrast in 1/16 grey levels: integers, so exact in any order of addition
    # (every backend decides alike).
    sums = be.sums(owner, be.xp.rint(y.ravel()[where] * 16), areas.size)
    means = sums[1:] / (16.0 * areas[1:])
    return be.order_statistic(means, 0.5) - b >= _BRIGHT * sigma


def _smoothed_look(image, p, be, padding=None):
    """Whether a 1-px Gaussian shows nuclei the raw Hoechst ``image`` hides in its noise
    (`DIM_WARNING`; they then stand `_DIM_SMOOTHED` sigmas over the smoothed background),
    and the smoothed stain and the diameter measured on it (which "auto" thresholds next).
    ``padding`` is the raw stain's.
    """
    trial = dataclasses.replace(p, nucleus_smoothing=AUTO_SMOOTHING)
    smooth = smoothed_stain(image, trial, be)
    padding = stain_padding(padding, AUTO_SMOOTHING, be)
    x = smooth.astype(be.xp.float32)
    grey = image_step(smooth, be, padding)
    diameter = p.diameter_px if p.diameter_px is not None else contrast_diameter(smooth, trial, be, x, grey,
                                                                                 padding)
    y = contrast_image(smooth, _BACKGROUND_WIDTH * diameter, be, x, padding)
    b, sigma, top = _contrast_statistics(y, be, grey=grey, padding=padding)
    return top - b >= _DIM_SMOOTHED * sigma, smooth, diameter


def typical_diameter(mask, be, min_area=9) -> float:
    """Median equivalent diameter (px) of the objects of ``mask``, specks left out.

    Objects under ``min_area`` px (at least 9) or under a tenth of the
    90th-percentile area are specks (noise, debris); the median of the rest is
    robust to a few merged clusters or glowing blobs. Callers pass the size
    filter's ``min_nucleus_area``: an object the filter drops is no nucleus and
    gets no vote. On dim, noisy Hoechst (nucleus mean 2.7-3.8 noise sigmas) the
    noise's specks under it had outnumbered the nuclei and made the diameter
    4.2 px for 10.8.
    """
    xp = be.xp
    areas = _objects(mask, be)[2][1:]
    areas = areas[areas >= max(9, min_area)]   # boolean indices of n values: syncs on CuPy
    if areas.size == 0:
        return _FALLBACK_DIAMETER
    big = be.order_statistic(areas, 0.9)
    areas = areas[areas >= _SPECK_FRACTION * big]
    median = be.order_statistic(areas.astype(xp.float64), 0.5)
    return max(2.0 * math.sqrt(median / math.pi), 3.0)


def background(image, width, be, padding=None):
    """Smooth background of an image: grey opening by a ``width`` square, then its box mean.

    Edges replicate. The window is odd and at most the image's shorter side. With
    ``padding`` (alignment padding, no data) both read the image's pixels only, as
    they read none past its edges: the padding's zeros, and the dim ramp a
    registration blends along them, had made the opening dip towards 0 over a
    window's width beside the padding, and that band's background bright nuclei
    (a Coelho ic100 field rotated by 7 degrees: strips of "nuclei" along the
    padding, F1 0.89 -> 0.78).

    Parameters
    ----------
    image : (M, N) uint8, uint16 or float32 array
    width : float, the window in px
    padding : (M, N) bool array, optional

    Returns
    -------
    (M, N) float32 array (0 where the window holds no image pixel)
    """
    xp = be.xp
    w = window(width, image.shape)
    if w < 3:
        return xp.zeros(image.shape, xp.float32)
    # The opening in the image's own dtype (minima and maxima are exact in any, and
    # 16-bit filters move half the bytes of float32 ones); the box mean of integers is
    # exact, the same on every backend and in every tile of a mosaic.
    if padding is None:
        return be.box_mean(be.grey_opening(image, w), w)
    # The padding at the dtype's top: the opening's minima pass over it, and at an image
    # pixel its maxima read only minima over windows that hold that pixel, so none is the
    # top. The mean is then over the image's pixels (exact integer sums again).
    if image.dtype.kind == "f":
        raise TypeError(f"background with padding needs an integer image, got {image.dtype}")
    top = image.dtype.type(xp.iinfo(image.dtype).max)
    opened = be.grey_opening(xp.where(padding, top, image), w)
    data = ~padding
    sums = be.box_sums(opened * data, w)
    counts = be.box_sums(data.view(xp.uint8), w)
    return (sums / xp.maximum(counts, 1)).astype(xp.float32)


def contrast_image(image, width, be, x=None, padding=None):
    """``image`` (as float32: ``x``) less its `background` ``width`` wide; 0 on ``padding``
    (no data, so no nucleus: the "contrast" thresholds are above 0).

    Returns
    -------
    (M, N) float32 array
    """
    x = image.astype(be.xp.float32) if x is None else x
    y = x - background(image, width, be, padding)
    if padding is not None:
        be.xp.copyto(y, be.xp.float32(0), where=padding)
    return y


# -- touching nuclei ----------------------------------------------------------------

_SEED_DEPTH = 0.3      # a seed lies at least this fraction of the nucleus radius inside the mask
_DEAD_SMOOTHING = 1.0  # sigma (px) of the Gaussian on Draq7 before its bright regions are taken


def split_nuclei(mask, diameter=None, params: SegmentParams | None = None, backend="cpu", *, seeds=None):
    """Instance labels of a nucleus mask, touching nuclei split: one label per nucleus.

    A nucleus is a hill of the distance to the mask's edge. The seeds are the
    pixels whose distance (in half-pixel steps) is within ``split_depth`` nucleus
    radii of the largest distance within ``split_spacing`` nucleus diameters of
    them (an octagon: 3x3 square and cross maxima in turn), and at least 0.3
    radii from the edge (so a thin protrusion seeds nothing). Connected seed
    pixels are one seed: along the flat ridge of an elongated nucleus they stay
    connected, so it is not cut; two nuclei whose outline narrows between them
    (the distance dips by more than the depth within the window) get one seed
    each, and a lower hill near a higher one (a bump on a nucleus' side) none.
    An h-maxima transform with h = ``split_depth`` radii, but for hills farther
    apart than the window, in a fixed number of local passes. The seeds then
    grow inside the mask, one pixel per step (`Backend.grow_labels`), so each
    pixel goes to the seed nearest along paths inside the mask; parts of the mask
    that no seed reaches (nuclei of no seed at all, e.g. smaller than the window
    next to a larger one) keep their own connected-component labels.

    Parameters
    ----------
    mask : (M, N) bool array
    diameter : float, optional
        Typical nucleus diameter in px; measured on ``mask`` (`typical_diameter`) when None.
    params : SegmentParams, optional
        ``split_depth``, ``split_spacing``.
    seeds : (M, N) bool array, optional
        Regions that are nuclei of their own whatever their shape (the Draq7-bright
        regions, see `find_nuclei`): each connected region is one seed, and the
        distance is taken to their edge too.

    Pieces under ``split_merge`` nucleus areas then join a neighbour
    (`merge_pieces`); the seeds' regions are never merged away.

    Returns
    -------
    labels : (M, N) int32 array, 0 background, 1..n
    n : int
    """
    p = as_params(params)
    be = get_backend(backend)
    xp = be.xp
    if diameter is None:
        diameter = typical_diameter(mask, be, p.min_nucleus_area)
    edge = ~mask
    if not bool(be.to_host(edge.any())):  # a mask wall to wall: no edge to measure from (one bool back)
        return be.label(mask)
    radius = diameter / 2
    # Half-pixel steps, nudged up past OpenCV's one-ulp wobble under whole numbers
    # (see stages.separation): exact integers on every backend.
    distance = be.distance_to(edge)
    distance *= xp.float32(2)
    distance += xp.float32(1e-3)
    # uint8 when every nucleus is under 128 px across (one scalar read back), else
    # uint16: the window maximum's many passes stay cheap.
    small = float(be.to_host(distance.max())) < 256
    q = xp.minimum(distance, 65535).astype(xp.uint8 if small else xp.uint16)
    top = be.octagon_max(q, max(1, round(p.split_spacing * diameter)))
    depth = int(2 * p.split_depth * radius)
    # top >= q (the window holds the pixel): the difference cannot wrap.
    marked = mask & (top - q <= depth) & (q >= int(2 * _SEED_DEPTH * radius))
    labels, n = be.label(marked)
    hills = n
    if seeds is not None:
        # A hill that touches a given region is that region's nucleus: dropped, and
        # the others renumbered 1..n (the region's label grows over it instead).
        keep = be.votes(labels[seeds], n + 1) == 0  # a boolean index: a sync on CuPy
        keep[0] = False
        renumber = xp.cumsum(keep).astype(xp.int32) * keep
        flat = labels.ravel()
        where = labelled(flat, xp)
        flat[where] = renumber[flat[where]]
        n = hills = int(be.to_host(keep.sum()))  # the count kept, one int back
        extra, m = be.label(seeds)
        _paint(labels, extra, n, be)
        n += m
    # Convergence checked every 2 steps: seeds lie within a few px of their edges.
    labels = be.grow_labels(labels, mask, check_every=2)
    rest, m = be.label(mask & (labels == 0))
    if m:
        _paint(labels, rest, n, be)
    # Labels hills + 1 .. n are the seeds' regions.
    ids = xp.arange(n + m + 1)
    fixed = (ids > hills) & (ids <= n)
    # The mask's pixels, for both steps below: the cut relabels them, never moves them.
    where = labelled(labels.ravel(), xp)
    labels, cut = cut_notches(labels, n + m, diameter, p, be, fixed, where=where)
    if not p.split_merge:
        return labels, cut
    fixed = xp.concatenate([fixed, xp.zeros(cut - n - m, bool)])
    return merge_pieces(labels, cut, p.split_merge * math.pi * radius**2, be, fixed, where=where)


#: `cut_notches`: the objects it looks at, and the least piece it leaves, in typical nucleus areas,
#: and the least (depth + depth) / length of a cut between two notches.
NOTCH_WHOLE, NOTCH_PIECE, NOTCH_SHARPNESS = 1.2, 0.5, 0.4


def cut_notches(labels, n, diameter, params: SegmentParams | None = None, backend="cpu", fixed=None, *,
                where=None):
    """Nuclei pressed flat together, cut apart at the notches their outlines make.

    Two nuclei pressed along a flat contact make one roundish object whose distance
    to the edge has one hill, so `split_nuclei` finds one seed; what tells them
    apart is their outline, pinched at each end of the contact. An object of at
    least `NOTCH_WHOLE` typical nucleus areas is cut along the line between two
    notches (convexity defects) each at least ``params.notch_depth`` nucleus radii
    deep, when the line is at most 1 / `NOTCH_SHARPNESS` times their summed depth
    and leaves two pieces of `NOTCH_PIECE` nucleus areas or more; the pieces are
    cut again the same way (`Backend.cut_notches`, on the host). A single nucleus'
    outline has no two such notches: it is convex, or pinched at one side only
    (a kidney). Two equal discs pinched this deep are already split by
    `split_nuclei` (their distance dips 0.29 radii between the hills).

    Parameters
    ----------
    labels : (M, N) int32 array, 0 background, 1..n
    n : int
    diameter : float, typical nucleus diameter in px
    params : SegmentParams, optional
        ``notch_depth`` (0: no cut).
    fixed : (n + 1,) bool array, optional
        Labels never cut (the Draq7-bright regions, nuclei of their own whatever their shape).
    where : (k,) int array, optional
        `labelled` of ``labels``, if already found.

    Returns
    -------
    labels : (M, N) int32 array, 1..n' (the pieces cut off numbered from n + 1;
        ``labels`` itself, rewritten, when it is C-contiguous)
    n' : int
    """
    p = as_params(params)
    be = get_backend(backend)
    xp = be.xp
    if not p.notch_depth or n == 0:
        return labels, n
    radius = diameter / 2
    area = math.pi * radius**2
    labels = xp.ascontiguousarray(labels)  # so that writes through ravel() land in it
    flat = labels.ravel()
    if where is None:
        where = labelled(flat, xp)
    owner = flat[where]
    candidates = be.votes(owner, n + 1) >= NOTCH_WHOLE * area
    candidates[0] = False
    if fixed is not None:
        candidates &= ~fixed
    if not bool(be.to_host(candidates.any())):  # one bool back
        return labels, n
    # Only the candidates' pixels go to the host (a boolean index: a sync on CuPy).
    pick = candidates[owner]
    where = where[pick]
    new, n = be.cut_notches(where, owner[pick], labels.shape, n, p.notch_depth * radius, NOTCH_SHARPNESS,
                            NOTCH_PIECE * area, NOTCH_WHOLE * area)
    flat[where] = new
    return labels, n


def merge_pieces(labels, n, min_area, backend="cpu", fixed=None, *, where=None):
    """Pieces under ``min_area`` px join the touching piece they share the most outline with.

    A shallow neck is enough to split two nuclei pressed together, and also cuts a
    sliver off a kidney-shaped or ragged nucleus: such a piece is too small to be a
    nucleus. Each piece under ``min_area`` joins the 4-neighbouring piece with the
    most pixel pairs across their common outline, if that piece is larger (equal
    areas: the larger label); pieces that join a piece that joins another end up in
    the last. Pieces of no neighbour stay.

    Parameters
    ----------
    labels : (M, N) int32 array, 0 background, 1..n
    n : int
    min_area : float, px
    fixed : (n + 1,) bool array, optional
        Labels never merged away (they may still take pieces in).
    where : (k,) int array, optional
        `labelled` of ``labels``, if already found.

    Returns
    -------
    labels : (M, N) int32 array, renumbered 1..n' in the order of the labels kept
        (``labels`` itself, rewritten, when it is C-contiguous)
    n' : int
    """
    be = get_backend(backend)
    xp = be.xp
    labels = xp.ascontiguousarray(labels)  # so that writes through ravel() land in it
    flat = labels.ravel()
    if where is None:
        where = labelled(flat, xp)  # a few % of a frame
    owner = flat[where]
    areas = be.votes(owner, n + 1)
    small = areas < min_area
    small[0] = False
    if fixed is not None:
        small &= ~fixed
    if not bool(be.to_host(small.any())):  # one bool back
        return labels, n
    # Each labelled pixel and its right and lower neighbours, within the image. The
    # boolean indices below (and unique's sort) are syncs on CuPy, on a few % of a frame.
    cols = labels.shape[1]
    right = where[where % cols != cols - 1]
    down = where[where < flat.size - cols]
    a = xp.concatenate([flat[right], flat[down]])
    b = xp.concatenate([flat[right + 1], flat[down + cols]])
    touch = (b > 0) & (a != b)
    a, b = a[touch], b[touch]
    src, dst = xp.concatenate([a, b]), xp.concatenate([b, a])
    larger = (areas[dst] > areas[src]) | ((areas[dst] == areas[src]) & (dst > src))
    go = small[src] & larger
    key = src[go].astype(xp.int64) * (n + 1) + dst[go]
    pairs, count = xp.unique(key, return_counts=True)
    join = xp.arange(n + 1)
    if pairs.size:  # the small pieces may all lack a larger neighbour
        src, dst = pairs // (n + 1), pairs % (n + 1)
        # Per source the most shared outline, then the smaller label: every key differs,
        # so the order is the same on every backend whatever its sort's stability.
        order = xp.lexsort(xp.stack([dst, -count, src]))
        src, dst = src[order], dst[order]
        first = xp.ones(src.size, bool)
        first[1:] = src[1:] != src[:-1]
        join[src[first]] = dst[first]
    # Each join goes to a larger piece, so chains end; pointer jumping: each pass doubles
    # the length of chain followed.
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):
        join = join[join]
    kept = xp.zeros(n + 1, bool)
    kept[join[areas > 0]] = True  # a label of no pixel (if any) is not kept
    kept[0] = False
    renumber = xp.cumsum(kept).astype(xp.int32) * kept
    flat[where] = renumber[join[owner]]
    return labels, int(be.to_host(kept.sum()))  # the count kept, one int back


def _paint(labels, extra, offset, be):
    """``labels[extra > 0] = extra + offset`` in place, over those pixels only.

    Labels cover a few % of a frame: gathering their positions (``flatnonzero``, a
    sync on CuPy) beats whole-frame ``where`` passes.
    """
    flat, add = labels.ravel(), extra.ravel()
    where = labelled(add, be.xp)
    flat[where] = add[where] + offset


class Nuclei(NamedTuple):
    """Labelled nuclei.

    labels : (M, N) int32 array, 0 background, 1..n one per nucleus
    n : int
    dead : (n + 1,) bool array, ``dead[i]`` for nucleus i (``dead[0]`` is False)
    bleed : float, the Hoechst bleed-through taken off the Draq7 before the call
    readings : (3, n) float64 host array or None
        With ``bleed="auto"``, what it was estimated from (`excess_readings`).
    """

    labels: object
    n: int
    dead: object
    bleed: float = 0.0
    readings: object = None


def nuclei(hoechst_mask, draq7_mask, backend="cpu", *, draq7=None, params: SegmentParams | None = None,
           diameter=None) -> Nuclei:
    """Label the union of both nucleus masks and call each nucleus live or dead.

    Parameters
    ----------
    hoechst_mask, draq7_mask : (M, N) bool arrays
    draq7 : (M, N) array, optional
        The Draq7 intensities. With it and ``params.dead_call == "ratio"`` a nucleus
        is dead when its mean Draq7 exceeds ``params.dead_ratio`` times the Draq7
        background (``params.draq7_background``: `local_background` averaged over
        the nucleus, or the field's `draq7_background`; no bleed-through
        correction, which needs the Hoechst image: `find_nuclei` makes it).
        Otherwise (the article's rule) a nucleus touching the Draq7 mask is dead.
    params : SegmentParams, optional
        With ``params.split_nuclei`` touching nuclei are split (`split_nuclei`);
        without params the connected components are the nuclei.
    diameter : float, optional
        The nucleus diameter (px) for the split; measured when None.

    Returns
    -------
    Nuclei
    """
    be = get_backend(backend)
    union = hoechst_mask | draq7_mask
    if params is not None and params.split_nuclei:
        labels, n = split_nuclei(union, diameter, params, be)
    else:
        labels, n = be.label(union)
    if draq7 is not None and params is not None and params.dead_call == "ratio":
        floor = None
        if params.draq7_background == "local":
            values, inside = draq7.astype(be.xp.float32), labels > 0
            outside = outside_nuclei(inside, be)
            size = diameter if diameter is not None else typical_diameter(union, be, params.min_nucleus_area)
            (field,) = backgrounds([values], inside, be, outside=outside)
            floor = local_background(values, inside, size, be, fill=field, outside=outside)
        return Nuclei(labels, n, dead_by_ratio(labels, n, values if floor is not None else draq7,
                                               params.dead_ratio, be, floor=floor, dark=params.draq7_dark))
    # Any Draq7 pixel (the mask is already size-filtered) makes the whole nucleus dead.
    # The labels under Draq7 pixels only (a boolean index: a sync on CuPy).
    dead = be.votes(labels[draq7_mask], n + 1) > 0
    dead[0] = False
    return Nuclei(labels, n, dead)


def draq7_background(draq7, nucleus_mask, backend="cpu") -> float:
    """The Draq7 background: its median outside every nucleus grown by 2 px (at least 1).

    Robust to the dead nuclei themselves and to a field half covered; the nuclei
    are grown so their blurred rims do not count. The median over every
    `background_step`-th row and column: as robust, a quarter of the sorting or less.
    """
    return backgrounds([draq7], nucleus_mask, backend)[0]


#: The Draq7 (and Hoechst) backgrounds are taken outside every nucleus grown by 2 px, a
#: footprint of this side: their blurred rims do not count.
GROW = 5


def outside_nuclei(nucleus_mask, backend="cpu", padding=None):
    """The pixels outside every nucleus grown by `GROW` // 2 px, and outside ``padding``: where
    backgrounds are taken."""
    outside = ~get_backend(backend).dilate(nucleus_mask, GROW)
    if padding is not None:
        outside &= ~padding
    return outside


def _is_image(floor) -> bool:
    """Whether a Draq7 background is an image (`local_background`) rather than one number."""
    return getattr(floor, "ndim", 0) == 2


def dead_line(floor, ratio: float, dark: float, backend="cpu"):
    """The Draq7 level over which a nucleus is dead: ``ratio`` times its background,
    both counted from the camera's dark level ``dark`` (``params.draq7_dark``).

    ``dark + ratio * max(floor - dark, 1)``: a background at or under the dark
    level (one set too high) counts as one grey level over it. The callers keep
    their own ``ratio * floor`` where ``dark`` is 0, so that outputs made without a
    dark level stay bit for bit (a float32 product there, a float64 one here).

    Parameters
    ----------
    floor : float or float32 array (per pixel or per nucleus)
    ratio, dark : float

    Returns
    -------
    float, or a float32 array of ``floor``'s shape on the backend's device
    """
    if getattr(floor, "ndim", 0):
        xp = get_backend(backend).xp
        dark32 = xp.float32(dark)
        return dark32 + xp.float32(ratio) * xp.maximum(floor - dark32, xp.float32(1))
    return dark + ratio * max(float(floor) - dark, 1.0)


def background_step(shape) -> int:
    """The row and column step of `draq7_background`'s sample: 2 below 2048² pixels, then
    twice the integer root of the area in 1024² frames (262,144 to 1,048,576 samples)."""
    return 2 * max(1, math.isqrt(shape[0] * shape[1] // (1 << 20)))


def backgrounds(images, nucleus_mask, backend="cpu", *, outside=None) -> list[float]:
    """`draq7_background` of each image (e.g. Draq7 and Hoechst), from one grown mask
    (``outside``, when the caller has `outside_nuclei` already)."""
    be = get_backend(backend)
    if outside is None:
        outside = outside_nuclei(nucleus_mask, be)
    s = background_step(outside.shape)
    pick = outside[::s, ::s]
    samples = [image[::s, ::s][pick] for image in images]  # boolean indices: syncs on CuPy
    if samples[0].size == 0:
        # The outside misses the grid (a few pixels between nuclei): all of its pixels;
        # or it is empty (nuclei wall to wall): every pixel of the grid.
        if bool(be.to_host(outside.any())):  # one bool back
            samples = [image[outside] for image in images]
        else:
            samples = [image[::s, ::s] for image in images]
    return [max(be.order_statistic(sample, 0.5), 1.0) for sample in samples]


#: `local_background`'s mesh: square blocks of the smallest power of two of pixels at least
#: this many nucleus diameters wide (a few cells: wider than a cluster of dead nuclei, narrower
#: than a glow or a vignetted corner), and at least `_MESH_MIN_BOX`. A power of two, so the
#: interpolation's positions ``(y + 0.5) / box`` are exact binary fractions wherever a window
#: starts: a mosaic's tile interpolates bit for bit as the whole image.
_MESH_DIAMETERS = 4
_MESH_MIN_BOX = 32
_MESH_SAMPLES = 16    # a block's median is over a 16 x 16 grid of its pixels
_MESH_OUTSIDE = 0.1   # of which this share must lie outside the nuclei, else the block borrows


def mesh_box(diameter) -> int:
    """The side (px) of `local_background`'s blocks for nuclei ``diameter`` px across."""
    return max(_MESH_MIN_BOX, 1 << math.ceil(math.log2(max(1.0, _MESH_DIAMETERS * diameter))))


def local_background(image, nucleus_mask, diameter, backend="cpu", *, fill=1.0, outside=None):
    """The background of ``image`` at every pixel, from a mesh of block medians outside the nuclei.

    The mesh method of SExtractor and photutils' ``Background2D``: the image is cut
    into square blocks of `mesh_box` px from the top left; each block's value is the
    (lower) median of a 16 x 16 grid of its pixels, those outside every nucleus grown
    by 2 px (as `draq7_background`). Then `mesh_values` smooths the block values and
    `mesh_image` interpolates them.

    Parameters
    ----------
    image : (M, N) float32 array
    nucleus_mask : (M, N) bool array
    diameter : float, the nucleus diameter (px)
    fill : float
        The value when no block has one (nuclei wall to wall).
    outside : (M, N) bool array, optional
        `outside_nuclei` of ``nucleus_mask``, when the caller has it already.

    Returns
    -------
    (M, N) float32 array, at least 1 (as `backgrounds`)
    """
    be = get_backend(backend)
    xp = be.xp
    box = mesh_box(diameter)
    step, side = box // _MESH_SAMPLES, _MESH_SAMPLES
    if outside is None:
        outside = outside_nuclei(nucleus_mask, be)
    # Pixels of nuclei, and the padding of partial blocks, as +inf: they sort last.
    samples = xp.where(outside[::step, ::step], image[::step, ::step], xp.float32(xp.inf))
    rows, cols = -(-samples.shape[0] // side), -(-samples.shape[1] // side)
    blocks = xp.full((rows * side, cols * side), xp.inf, xp.float32)
    blocks[: samples.shape[0], : samples.shape[1]] = samples
    blocks = xp.sort(blocks.reshape(rows, side, cols, side).transpose(0, 2, 1, 3).reshape(rows, cols, -1))
    count = (blocks < xp.float32(xp.inf)).sum(axis=-1)
    median = xp.take_along_axis(blocks, (xp.maximum(count, 1) - 1)[..., None] // 2, axis=-1)[..., 0]
    # The rows x cols block values and counts to the host on purpose (one transfer; a
    # sync on CuPy). A count of at most 256 is exact in float32.
    median, count = be.to_host(xp.stack([median, count.astype(xp.float32)]))
    grid = mesh_values(median, count, fill)
    return mesh_image(grid, box, image.shape, backend=be)


def mesh_values(median, count, fill=1.0):
    """`local_background`'s block values, smoothed: host arithmetic on a small grid.

    A block with under a tenth of its 16 x 16 samples outside the nuclei has no value
    of its own. Each block then takes the median of the values in its 3 x 3
    neighbourhood (a block lit by a dead cell's blur is outvoted, an empty one
    borrows its neighbours'); a block with none near takes the median of all
    values, and with no value anywhere every block is ``fill``.

    Parameters
    ----------
    median : (H, W) float array, each block's median outside the nuclei
    count : (H, W) int array, its samples outside the nuclei

    Returns
    -------
    (H, W) float32 ndarray, at least 1
    """
    rows, cols = median.shape
    grid = np.where(np.asarray(count) >= _MESH_OUTSIDE * _MESH_SAMPLES**2, np.asarray(median, np.float64), np.nan)
    valid = grid[~np.isnan(grid)]
    if valid.size == 0:
        return np.full((rows, cols), max(fill, 1.0), np.float32)
    neighbours = np.pad(grid, 1, mode="edge")
    stack = np.sort([neighbours[i : i + rows, j : j + cols] for i in range(3) for j in range(3)], axis=0)
    have = (~np.isnan(stack)).sum(axis=0)  # NaN sorts last
    grid = np.take_along_axis(stack, (np.maximum(have, 1) - 1)[None] // 2, axis=0)[0]
    grid[have == 0] = np.median(valid)
    return np.maximum(grid, 1.0).astype(np.float32)


def mesh_image(grid, box, shape, origin=(0, 0), backend="cpu"):
    """Block values interpolated bilinearly between block centres, over one window of the image.

    Parameters
    ----------
    grid : (H, W) float32 ndarray (host), `mesh_values`
    box : int, the block side (a power of two)
    shape : (int, int), the window's shape
    origin : (int, int), the window's top-left pixel in the image the grid covers

    Returns
    -------
    shape float32 array on the backend's device: the window of the whole image's
    interpolation, bit for bit (a mosaic's tile), as only the blocks around the
    window are enlarged.
    """
    be = get_backend(backend)
    (y0, x0), (h, w) = origin, shape
    # One block more on each side than the window touches: no window pixel reads past them.
    r0, c0 = max(y0 // box - 1, 0), max(x0 // box - 1, 0)
    r1, c1 = min(-(-(y0 + h) // box) + 1, grid.shape[0]), min(-(-(x0 + w) // box) + 1, grid.shape[1])
    part = be.to_device(np.ascontiguousarray(grid[r0:r1, c0:c1]))  # a few blocks to the device
    top, left = y0 - r0 * box, x0 - c0 * box
    return be.upsample(part, box)[top : top + h, left : left + w]


def dead_by_ratio(labels, n, draq7, ratio, backend="cpu", *, floor=None, dark=0.0):
    """Dead where a nucleus' mean Draq7 is above ``ratio`` times the Draq7 background
    (both counted from the camera's dark level ``dark``: `dead_line`).

    The background (``floor``: a number, or an image such as `local_background`,
    averaged over each nucleus; else `draq7_background` outside ``labels``) is
    taken outside the nuclei. A ratio to the background, not a threshold of the
    Draq7 image, so a dim but real Draq7 nucleus counts; the mean, not any pixel,
    so a speck of debris on a live nucleus does not kill it. Hoechst bleed-through
    is taken off first by `find_nuclei` (``SegmentParams.bleed``), not here.

    Returns
    -------
    dead : (n + 1,) bool array, ``dead[0]`` False
    """
    be = get_backend(backend)
    values = draq7.astype(be.xp.float32, copy=False)
    if floor is None:
        floor = draq7_background(values, labels > 0, be)
    if _is_image(floor):
        means, floor = nucleus_means(labels, n, [values, floor], be)
        return _above(means, dead_line(floor, ratio, dark, be) if dark else be.xp.float32(ratio) * floor)
    return _above(nucleus_means(labels, n, [values], be)[0], dead_line(floor, ratio, dark) if dark else ratio * floor)


def _above(means, level):
    dead = means > level
    dead[0] = False
    return dead


def nucleus_means(labels, n, images, backend="cpu"):
    """The mean of each image over each nucleus.

    Parameters
    ----------
    labels : (M, N) int32 array, 0 background, 1..n
    n : int
    images : sequence of (M, N) arrays (summed as float32)

    Returns
    -------
    list of (n + 1,) float arrays, one per image; ``[0]`` is 0
    """
    be = get_backend(backend)
    xp = be.xp
    # Over the nucleus pixels only (a few % of a frame; flatnonzero syncs on CuPy).
    # Each label's pixels are still summed in raster order: the same sums.
    where = labelled(labels, xp)
    owner = labels.ravel()[where]
    area = xp.maximum(be.votes(owner, n + 1), 1)
    # Label 0 owns no pixel here, so its sum, hence its mean, is 0.
    return [be.sums(owner, image.ravel()[where].astype(xp.float32, copy=False), n + 1) / area
            for image in images]


#: The most Hoechst bleed-through ``bleed="auto"`` takes off. Hoechst leaks into a
#: Draq7 (Cy5) filter set by a few % at most, while a dead nucleus' Draq7 excess is
#: 0.2-13 times its Hoechst excess on the ADCC fields (10th percentile 0.22-4.1 per
#: field), so a field of dead nuclei only (no live ones to measure the bleed on)
#: loses at most a tenth of its Hoechst off its Draq7.
MAX_BLEED = 0.1
_BLEED_QUANTILE = 0.25   # the low end of the ratios: of the live nuclei, or of all while a quarter live
_BLEED_BRIGHT = 0.25     # measured on nuclei with a Hoechst excess over a quarter of the median's
_BLEED_MIN = 5           # fewer nuclei: no estimate (0)


def excess_readings(hoechst, draq7, room=None, backend="cpu") -> np.ndarray:
    """What the bleed estimate reads of each nucleus, on the host.

    Parameters
    ----------
    hoechst, draq7 : (n + 1,) float arrays
        Each nucleus' mean over its channel's background; ``[0]`` is ignored.
    room : (n + 1,) float array or float, optional
        The Draq7 excess over the background at which a nucleus is called dead
        (``(dead_ratio - 1)`` times its background); None: not known.

    Returns
    -------
    (3, n) float64 array
        Rows: Hoechst excess, Draq7 excess, the room (-inf when not known).
    """
    be = get_backend(backend)
    xp = be.xp
    room = -np.inf if room is None else room
    rows = [hoechst, draq7, xp.broadcast_to(xp.asarray(room, dtype=hoechst.dtype), hoechst.shape)]
    # 3 x n numbers to the host on purpose (one transfer; a sync on CuPy).
    return np.asarray(be.to_host(xp.stack(rows)), np.float64)[:, 1:]


def bleed_from(readings) -> float:
    """The Hoechst bleed-through into Draq7 from `excess_readings` (of one field, or pooled).

    A live nucleus' Draq7 excess over the background is its Hoechst excess times
    the bleed coefficient; a dead nucleus' is far above that. So the ratio of the
    two excesses is measured over the nuclei with a clear Hoechst excess (over a
    quarter of the median's), and taken from the live ones:

    - the nuclei under the dead line before any correction are live whatever the
      bleed (the correction only lowers Draq7). When at least 5 of them have a clear
      Hoechst excess, the estimate is the 25th percentile of their ratios: right
      however few nuclei live;
    - otherwise (nearly every nucleus over the line: a field of dead nuclei, or
      bleed-through that lifts every live one; or the room not known) it is the 25th
      percentile of all the ratios, whose low end is the live nuclei while at least
      a quarter of them live.

    Either is clipped to [0, `MAX_BLEED`]. With no bleed-through it measures ~0.004
    on synthetic frames, 0-0.022 on seven ADCC fields and 0.087 on the eighth
    (Hoechst barely over its background there).

    Parameters
    ----------
    readings : (3, n) float array, as `excess_readings` returns

    Returns
    -------
    float
        0 when fewer than 5 nuclei have a clear Hoechst excess.
    """
    h, d, room = np.asarray(readings, np.float64)
    positive = h[h > 0]
    if positive.size < _BLEED_MIN:
        return 0.0
    bright = h > _BLEED_BRIGHT * np.median(positive)
    if bright.sum() < _BLEED_MIN:
        return 0.0
    live = bright & (d <= room)
    pick = live if live.sum() >= _BLEED_MIN else bright
    ratios = np.sort(d[pick] / h[pick])
    low = ratios[int(_BLEED_QUANTILE * (ratios.size - 1))]
    return float(min(max(low, 0.0), MAX_BLEED))


def bleed_coefficient(hoechst, draq7, backend="cpu", room=None) -> float:
    """Estimate the Hoechst bleed-through into Draq7 from the nuclei of one field.

    `bleed_from` of `excess_readings`; the arguments are those of `excess_readings`.
    """
    return bleed_from(excess_readings(hoechst, draq7, room, backend))


def dead_regions(draq7, floor, diameter, params: SegmentParams | None = None, backend="cpu"):
    """The Draq7-bright regions: where a dead nucleus is, whatever the Hoechst shows.

    Draq7 smoothed by a 1-px Gaussian, above ``dead_ratio`` times the background
    ``floor`` and above ``nucleus_level`` of the way from the background to the
    brightest Draq7 within a nucleus radius (an octagon of 3x3 maxima): the edge
    of a bright nucleus at the same level as the Hoechst edge, not the halo its
    blur spreads over its neighbours. ``floor`` is a number or an (M, N) float32
    image (`local_background`).

    Returns
    -------
    (M, N) bool array
    """
    p = as_params(params)
    be = get_backend(backend)
    xp = be.xp
    smooth = be.gaussian(draq7, _DEAD_SMOOTHING)
    # Whole grey levels (exact on every backend); the Gaussian of 16-bit data can
    # round a hair past 65,535, so clip before the cast.
    top = be.octagon_max(xp.minimum(smooth, xp.float32(65535)).astype(xp.uint16), max(1, round(diameter / 2)))
    local = _is_image(floor)
    ratio, share = xp.float32(p.dead_ratio), xp.float32(p.nucleus_level)
    dark = p.draq7_dark
    if not local:
        over = dead_line(floor, p.dead_ratio, dark) if dark else p.dead_ratio * floor
        floor, over = xp.float32(floor), xp.float32(over)
    out = xp.empty(smooth.shape, bool)

    def band(rows):
        # Band by band: the float32 temporaries stay in cache (the same float operations
        # as floor + share * (top - floor) on whole images).
        f = floor[rows] if local else floor
        level = top[rows].astype(xp.float32)
        level -= f
        level *= share
        level += f
        xp.greater_equal(smooth[rows], level, out=out[rows])
        if not local:
            line = over
        else:   # (the dark level's own form only where one is set: the defaults' floats stay as they were)
            line = dead_line(f, p.dead_ratio, dark, be) if dark else ratio * f
        out[rows] &= smooth[rows] > line

    be.by_rows(band, smooth.shape)
    return out


#: A Draq7-bright region with no Hoechst under it is a nucleus only from this fraction of a
#: nucleus' area up (half its diameter): smaller ones are debris (apoptotic bodies, nuclear
#: fragments), which take up Draq7 but are no cell.
_LONE_FRACTION = 0.25


def _drop_debris(regions, ho_mask, min_area, lone_area, be):
    """``regions`` less those under ``min_area`` px, and those off the Hoechst mask under ``lone_area``."""
    where, owner, areas = _objects(regions, be)
    # The regions with a Hoechst-mask pixel (a boolean index: a sync on CuPy).
    stained = be.votes(owner[ho_mask.ravel()[where]], areas.shape[0]) > 0
    drop = (areas < min_area) | (~stained & (areas < lone_area))
    regions = regions.copy()
    regions.ravel()[where[drop[owner]]] = False   # as in `_drop_small`: a sync on CuPy
    return regions


def find_nuclei(hoechst, draq7, params: SegmentParams | None = None, backend="cpu", *,
                hoechst_threshold=None, draq7_threshold=None, diameter=None, floor=None,
                hoechst_floor=None, bleed=None, padding=None):
    """The whole nucleus stage of a frame: masks, labels, live/dead call.

    With ``dead_call="ratio"`` (default) the nuclei are those of the Hoechst mask
    and the Draq7 image only calls them (`dead_by_ratio`); the Draq7 mask of the
    class mask is the dead nuclei. With ``split_nuclei`` (default) touching nuclei
    are split (`split_nuclei`), and with ``dead_seeds`` (default) the Draq7-bright
    regions -- Draq7 smoothed by a 1-px Gaussian over ``dead_ratio`` times its
    background, of at least the nucleus size filter's area, and a quarter of a
    nucleus' area where no Hoechst is under them (smaller ones are debris) -- are
    nuclei of their own and join the mask: a dead nucleus pressed against a live
    one is not averaged with it, and one too dim in Hoechst is still found. With ``"touch"``
    the nuclei are the union of both masks, as in the article.

    The Draq7 background of the "ratio" call and of the Draq7-bright regions is
    `local_background` (``draq7_background="local"``; each nucleus is compared with
    the mean of it over its pixels) or the field's median (`draq7_background`).

    Before the "ratio" call each nucleus' mean Draq7 is lowered by ``bleed``
    (``params.bleed``; `bleed_coefficient` when "auto") times its mean Hoechst over
    the Hoechst background: the Hoechst that bleeds into the Draq7 channel.

    ``hoechst_threshold``, ``draq7_threshold`` (for "touch"), ``diameter`` (px),
    ``floor`` (the Draq7 background, for "ratio": a number, or an image of the
    local background, `local_background`), ``hoechst_floor`` (the Hoechst
    background, measured as the Draq7's) and ``bleed`` (a number), when given, were
    computed elsewhere (e.g. over a whole mosaic of which these images are one
    tile) and replace the values measured on the images. The "contrast" threshold is over
    the subtracted background.

    ``padding`` ((M, N) bool array): alignment padding (`~livedead_gpu.stages.gradient.frame_padding`),
    no data: the "contrast" threshold does not read it (`background`) and the backgrounds of
    the live/dead call leave it out.

    Returns
    -------
    nuclei : Nuclei
    hoechst_mask, draq7_mask : (M, N) bool arrays
    thresholds : (float, float or None, float)
        Hoechst's, Draq7's ("touch" only) and the sigma of the Gaussian the Hoechst
        mask was taken after (``nucleus_smoothing``, "auto" decided).
    """
    p = as_params(params)
    be = get_backend(backend)
    xp = be.xp
    if padding is not None and (getattr(padding, "dtype", None) != bool or padding.shape != hoechst.shape):
        raise ValueError(f"padding must be a bool array of hoechst's shape {hoechst.shape}, got "
                         f"{getattr(padding, 'dtype', type(padding).__name__)} of shape {getattr(padding, 'shape', None)}")
    ho_mask, ho_thr, diameter, smoothing, ho_lit = _nucleus_mask(hoechst, p, be, hoechst_threshold, diameter,
                                                                 padding)
    if p.dead_call == "touch":
        d7_mask, d7_thr, *_ = _nucleus_mask(draq7, p, be, draq7_threshold, padding=padding)
        nuc = nuclei(ho_mask, d7_mask, be, params=p, diameter=diameter)
        return nuc, ho_mask, d7_mask, (ho_thr, d7_thr, smoothing)
    values = draq7.astype(xp.float32)
    if bleed is None:
        bleed = p.bleed
    # A given ``floor`` is a number (the field's background) or an image (a mosaic
    # tile's window of the local background).
    local = _is_image(floor) or (floor is None and p.draq7_background == "local")
    # The backgrounds not given, all taken outside one grown mask; Hoechst's only for the bleed.
    need_hoechst = bleed != 0 and hoechst_floor is None
    outside = outside_nuclei(ho_mask, be, padding) if floor is None or need_hoechst else None
    if floor is None and need_hoechst:
        floor, hoechst_floor = backgrounds([values, hoechst], ho_mask, be, outside=outside)
    elif floor is None:
        (floor,) = backgrounds([values], ho_mask, be, outside=outside)
    elif need_hoechst:
        (hoechst_floor,) = backgrounds([hoechst], ho_mask, be, outside=outside)
    if diameter is None and (local or (p.split_nuclei and p.dead_seeds)):
        diameter = typical_diameter(ho_mask, be, p.min_nucleus_area)
    if local and not _is_image(floor):
        # The field's median fills the mesh where nuclei cover every block.
        floor = local_background(values, ho_mask, diameter, be, fill=floor, outside=outside)
    seeds = None
    mask = ho_mask
    if p.split_nuclei and p.dead_seeds:
        # Stained: over the Hoechst threshold before the edge cut, which can take a dim dead
        # nucleus pressed against a bright live one out of the mask (the local level there is
        # mostly the bright one's); such a nucleus, shrunk as dying ones are, is no debris.
        seeds = _drop_debris(dead_regions(values, floor, diameter, p, be), ho_lit, _min_area(p, diameter),
                             _LONE_FRACTION * math.pi * diameter**2 / 4, be)
        mask = ho_mask | seeds
    if p.split_nuclei:
        labels, n = split_nuclei(mask, diameter, p, be, seeds=seeds)
    else:
        labels, n = be.label(mask)
    images = [values] + ([hoechst] if bleed != 0 else []) + ([floor] if local else [])
    means, *rest = nucleus_means(labels, n, images, be)
    # Each nucleus' own background: the mean of the local one over its pixels.
    if local:
        *rest, floor = rest
        over = dead_line(floor, p.dead_ratio, p.draq7_dark, be) if p.draq7_dark else xp.float32(p.dead_ratio) * floor
    elif p.draq7_dark:
        floor, over = xp.float32(floor), xp.float32(dead_line(floor, p.dead_ratio, p.draq7_dark))
    else:
        floor, over = xp.float32(floor), p.dead_ratio * floor
    readings = None
    if bleed != 0:
        (lit,) = rest
        lit -= xp.float32(hoechst_floor)
        if bleed == "auto":
            readings = excess_readings(lit, means - floor, over - floor, be)
            bleed = bleed_from(readings)
        # A nucleus dimmer than the Hoechst background gets no correction, not a gain.
        means -= xp.float32(bleed) * xp.maximum(lit, 0)
    dead = _above(means, over)
    return Nuclei(labels, n, dead, float(bleed), readings), ho_mask, be.by_label(dead, labels), (ho_thr, None, smoothing)
