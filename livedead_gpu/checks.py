"""The one input policy: which arrays the segmentation takes, and what it says otherwise."""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

import numpy as np

__all__ = ["as_intensity", "check_same_shape"]


def as_intensity(image, name: str, min_side: int = 1) -> np.ndarray:
    """Check a host image and return it as uint8 or uint16.

    The dtype policy of the whole package:

    - uint8 and uint16 pass unchanged (no copy);
    - other integer dtypes (signed, uint32, ...) are converted to uint16 when every
      value lies in [0, 65535], else ``ValueError``;
    - floats are taken as intensities on the uint16 scale and rounded to the
      nearest integer, when finite and in [0, 65535]; a float image whose maximum is
      at most 1 looks normalised and is refused (scale it to the camera's range), as
      is a brightfield of fractions that would round to under 16 grey levels (divided
      by its background: a ratio around 1);
    - bool (a mask, not an image), complex and object arrays are a ``TypeError``.

    Parameters
    ----------
    image : (M, N) array_like
    name : str
        Argument name used in error messages.
    min_side : int
        Smallest allowed ``M`` and ``N`` (e.g. the block size of the threshold).

    Returns
    -------
    (M, N) uint8 or uint16 ndarray
    """
    if not hasattr(image, "__array__") and not isinstance(image, (list, tuple)):
        raise TypeError(f"{name} must be a 2-D array, got {type(image).__name__}")
    if type(image).__module__.startswith("cupy"):
        raise TypeError(f"{name} is a CuPy array: pass host (NumPy) arrays; the backend moves them")
    if isinstance(image, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; its mask would be ignored: fill the masked pixels "
                        "(e.g. image.filled(0)) and pass a plain array")
    a = np.asarray(image)
    if a.dtype == bool:
        raise TypeError(f"{name} has dtype bool (a mask); expected an intensity image (uint8 or uint16)")
    if a.dtype.kind not in "uif":
        raise TypeError(f"{name} has dtype {a.dtype}; expected an intensity image (uint8 or uint16)")
    if a.ndim != 2:
        hint = " (an RGB/multichannel image? pass one channel)" if a.ndim == 3 and a.shape[-1] in (3, 4) else ""
        raise ValueError(f"{name} must be 2-D (M, N), got shape {a.shape}{hint}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if min(a.shape) < min_side:
        raise ValueError(
            f"{name} has shape {a.shape}; each side must be at least {min_side} px "
            f"(params.coarseness: one threshold block)"
        )
    if a.dtype in (np.uint8, np.uint16):
        return a
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite pixel(s)")
    lo, hi = a.min().item(), a.max().item()  # Python numbers: 65535 is inf in float16
    if lo < 0 or hi > 65535:
        raise ValueError(f"{name} has values in [{lo}, {hi}]; expected intensities in [0, 65535]")
    if a.dtype.kind == "f":
        if hi <= 1:
            raise ValueError(
                f"{name} is a float image with values in [{lo}, {hi}]; it looks normalised to "
                f"[0, 1]: scale it to the camera's range (e.g. * 65535) first"
            )
        # Rounded to whole grey levels, a brightfield divided by its background (a ratio
        # around 1) would keep a handful of levels and lose the cells without a word. A
        # brightfield is never that dim; a stain is (an empty well's Draq7 spans a few
        # levels), so the stains are not held to it. (Whole numbers stored as floats lose
        # nothing.)
        rounded = np.rint(a)
        levels = round(hi) - round(lo) + 1
        if name == "brightfield" and levels < _MIN_FLOAT_LEVELS and (rounded != a).any():
            raise ValueError(
                f"{name} is a float image with values in [{lo:g}, {hi:g}], {levels} grey level(s) once rounded; "
                f"it looks rescaled (e.g. flat-field divided): scale it to the camera's range (e.g. * 1000) first"
            )
        return rounded.astype(np.uint16)
    return a.astype(np.uint16)


#: A float brightfield must span this many whole grey levels (an 8-bit camera's spans
#: dozens at the least).
_MIN_FLOAT_LEVELS = 16


def check_same_shape(**images) -> None:
    """Raise ``ValueError`` unless all the named arrays have one shape."""
    shapes = {name: np.shape(a) for name, a in images.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"channel shapes differ: {listed}; expected one (M, N) shape")


#: A stain with this share of its pixels at 0 where the brightfield holds data looks
#: background-subtracted and clipped (synthetic frames broke from ~40 %).
_ZERO_SHARE = 0.25
_SUBTRACTED = {
    "hoechst": "its noise, taken from the darker half of the image, reads 0 and the nucleus threshold "
               "falls into it (thousands of false nuclei)",
    "draq7": "the dead call compares each nucleus' Draq7 with dead_ratio times the Draq7 background, which the "
             "subtraction took away (live nuclei called dead)",
}


def warn_if_subtracted(images: dict, stains=("hoechst", "draq7"), step: int = 4, stacklevel: int = 3) -> None:
    """A `UserWarning` for each stain that looks background-subtracted and clipped at 0.

    Counted on every ``step``-th row and column, where the brightfield is not 0
    (alignment padding is 0 in every channel). See README, "Known limits".

    Parameters
    ----------
    images : dict of (M, N) uint8 or uint16 host arrays, "brightfield" and the stains
    """
    data = images["brightfield"][::step, ::step] > 0
    n = int(np.count_nonzero(data))
    if n < 256:
        return
    for name in stains:
        share = np.count_nonzero(images[name][::step, ::step][data] == 0) / n
        if share >= _ZERO_SHARE:
            warn(
                f"{name} has {share:.0%} of its pixels at 0 where the brightfield holds data: it looks "
                f"background-subtracted (e.g. a rolling ball) and clipped; {_SUBTRACTED[name]}. Give the raw "
                "image (and draq7_dark for a camera offset)",
                UserWarning, stacklevel=stacklevel)


#: The four edge lines of an image: padding shows there first.
EDGES = (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1])


def inside_padding(images: dict, least: int = 1):
    """``(images, box)``: the named images cut to their `data_box` (contiguous), or as given and None."""
    box = data_box(images.values(), least)
    if box is None:
        return images, None
    return {name: np.ascontiguousarray(image[box]) for name, image in images.items()}, box


def data_box(images, least: int = 1):
    """The rows and columns inside margins of exact 0 that all ``images`` share, or None.

    Registering a movie's frames (drift correction) pads each with 0 in every
    channel. Segmented whole, a margin of a quarter of the frame made the Hoechst
    statistics (its darker half all 0) read a noise sigma of 0: no nucleus found
    (a 512² synthetic frame, 128 of its columns 0: nucleus F1 1.0 -> 0.03), and a
    tenth of it put 15 live nuclei among the dead. Only whole rows and columns at
    the edges count (a translation's padding); the frame inside must keep ``least``
    px a side, else None.

    Parameters
    ----------
    images : iterable of (M, N) host arrays, one shape

    Returns
    -------
    (slice, slice) or None
        None when no edge row or column is 0 in every image (most frames: four edge
        lines read).
    """
    images = list(images)
    if not any(all(not image[e].any() for image in images) for e in EDGES):
        return None
    zero = np.logical_and.reduce([image == 0 for image in images])
    return box_inside(zero.all(axis=1), zero.all(axis=0), least)


def box_inside(zero_rows, zero_cols, least: int = 1):
    """`data_box` from which rows and which columns are 0 throughout (1-D bool host arrays).

    A side cut at zeros keeps one line of them: the cell-area stage then sees where the
    padding was (`~livedead_gpu.stages.gradient.padding_mask`) and sets aside the 2 px
    beside it too, which a registration that shifts by a fraction of a pixel blends
    with the zeros (a dim ramp whose edge would be cell area: a 512² frame shifted
    10.5 px had the 3 columns beside the padding all cell area, 0.2 elsewhere); the
    nucleus stages keep every line of image.
    """
    spans = []
    for zero in (zero_rows, zero_cols):
        keep = np.flatnonzero(~np.asarray(zero))
        if keep.size == 0 or keep[-1] + 1 - keep[0] < least:
            return None
        spans.append(slice(max(0, int(keep[0]) - 1), min(len(zero), int(keep[-1]) + 2)))
    box = tuple(spans)
    return None if box == (slice(0, len(zero_rows)), slice(0, len(zero_cols))) else box


_context = threading.local()


@contextmanager
def saying_where(where: str):
    """Within it, in this thread, the segmentation's warnings end with ``[where]``.

    A plate's frames name themselves so (``"well B3 site 0 time 12, file"``): on
    thousands of frames "draq7 has 35% of its pixels at 0" alone says not where.
    Per thread, as Dask runs frames on a worker's threads (`warnings.catch_warnings`
    is process-wide); each frame's text then differs, so each is shown.
    """
    before = getattr(_context, "where", None)
    _context.where = where
    try:
        yield
    finally:
        _context.where = before


def warn(text: str, category=UserWarning, stacklevel: int = 1):
    """`warnings.warn` of ``text``, naming the frame of `saying_where` when inside it."""
    where = getattr(_context, "where", None)
    warnings.warn(f"{text} [{where}]" if where else text, category, stacklevel=stacklevel + 1)
