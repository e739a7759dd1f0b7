"""The CPU backend: NumPy for the block-max histogram, OpenCV for everything else."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import cv2
import numpy as np

from .base import Backend, connectivity as _connectivity, ellipse


@lru_cache(maxsize=16)
def _kernel(size: int) -> np.ndarray:
    return ellipse(size).view(np.uint8)


@lru_cache(maxsize=4)
def _diamond(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (np.abs(y) + np.abs(x) <= radius).astype(np.uint8)


_SQUARE = np.ones((3, 3), np.uint8)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
#: `CpuBackend.by_rows` (and so `CpuBackend.gradient`) splits images from this many pixels
#: up into bands of about `_BAND_PIXELS` (a float32 band and its temporaries then fit in
#: a core's L2 cache).
_BAND_MIN = 1 << 20
_BAND_PIXELS = 1 << 18


_POOL_NAME = "livedead-bands"
_pools: dict = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` workers for `CpuBackend.by_rows`.

    Kept between calls: a fresh pool costs ~0.7 ms (two threads started and joined),
    which a frame's five banded passes would pay each time. Keyed by the process id
    too, since a forked process (a Dask worker) inherits the dict but not the threads.
    """
    key = (os.getpid(), threads)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(threads, thread_name_prefix=_POOL_NAME)
        return _pools[key]


def _u8(mask: np.ndarray) -> np.ndarray:
    # A bool array is one byte of 0/1 per pixel: OpenCV can take it as uint8 without a copy.
    return np.ascontiguousarray(mask).view(np.uint8)


class CpuBackend(Backend):
    """NumPy + OpenCV on the host. Every array is a ``numpy.ndarray``.

    Parameters
    ----------
    overlap : bool
        Whether `together` may run independent stages on a second thread (with
        OpenCV on more than one). False where the caller keeps the other core busy
        itself, as `livedead_gpu.export.export_plate`'s writer thread does.
    """

    name = "cpu"
    xp = np

    def __init__(self, overlap: bool = True):
        self.overlap = overlap

    def gaussian(self, image, sigma):
        # The size given: OpenCV's own, cvRound(8 sigma + 1) | 1 taps, is a tap wider each side
        # than ndimage's truncate=4 (radius int(4 sigma + 0.5)) wherever 4 sigma % 1 is in
        # [0.25, 0.5) (sigma 1.1, 2.1, 5.1 ...).
        size = 2 * int(4 * sigma + 0.5) + 1
        return cv2.GaussianBlur(image.astype(np.float32, copy=False), (size, size), sigma)

    def sobel(self, image):
        return _sobel(image)

    def gradient(self, image, sigma):
        # Band by band of rows, on OpenCV's threads: a band's Gaussian, Sobel and magnitude
        # temporaries stay in cache, where the whole image takes five float32 passes through
        # memory (2048²: 11.9 -> 6.2 ms on 2 cores, 14.4 -> 11.1 ms on one). Bit-identical to
        # the whole-image calls: each band reads real rows past both filters' reach above and
        # below, and a band keeps whole rows, so every row takes the same SIMD path.
        rows = image.shape[0]
        # Sobel's 1 row, and the Gaussian's radius (`gaussian`'s kernel).
        reach = 1 + (int(4 * sigma + 0.5) if sigma > 0 else 0)
        out = np.empty(image.shape, np.float32)

        def band(span):
            top, bottom = max(0, span.start - reach), min(rows, span.stop + reach)
            # float32 either way: OpenCV's Sobel reads it faster than 8 or 16 bits (2048²,
            # unsmoothed: 12.5 -> 8.1 ms), and the integer sums are exact in float32 (< 2**24).
            part = image[top:bottom].astype(np.float32)
            _sobel(self.gaussian(part, sigma) if sigma > 0 else part, (span.start - top, span.stop - top), out[span])

        self.by_rows(band, image.shape)
        return out

    def by_rows(self, fn, shape):
        # Bands of ~_BAND_PIXELS on OpenCV's threads (NumPy's ufuncs and OpenCV release the
        # GIL), so a band's temporaries stay in cache; one call below _BAND_MIN pixels.
        rows, cols = shape
        if rows * cols < _BAND_MIN:
            return fn(slice(0, rows))
        step = max(16, _BAND_PIXELS // cols)
        bands = [slice(start, min(rows, start + step)) for start in range(0, rows, step)]
        threads = cv2.getNumThreads()
        # Not from a band itself: a nested call would wait on the workers it occupies.
        if threads > 1 and not threading.current_thread().name.startswith(_POOL_NAME):
            list(_pool(threads).map(fn, bands))
        else:
            for band in bands:
                fn(band)

    def by_label(self, flags, labels):
        # Written at the labelled pixels only (a few % of a frame): a whole-frame gather
        # costs ~3x as much (2048²: 8.7 against 3.1 ms).
        out = np.zeros(labels.shape, bool)
        where = np.flatnonzero(labels > 0)
        out.ravel()[where] = flags[labels.ravel()[where]]  # ravel(): C order, a copy if need be
        return out

    def together(self, *calls):
        # The stages are long runs of single-threaded NumPy between OpenCV's parallel
        # calls: side by side they fill both cores (2048², cell area beside the nucleus
        # stage: 324 -> 294 ms). One OpenCV thread (a Dask worker's share) runs them in turn.
        if not self.overlap or cv2.getNumThreads() < 2 or len(calls) < 2:
            return super().together(*calls)
        with ThreadPoolExecutor(len(calls) - 1) as pool:
            futures = [pool.submit(call) for call in calls[1:]]
            first = calls[0]()
            return [first] + [future.result() for future in futures]

    def dilate(self, mask, size, iterations=1):
        if iterations == 0:
            return mask
        # OpenCV's default border value ignores pixels outside the image.
        return cv2.dilate(_u8(mask), _kernel(size), iterations=iterations).view(bool)

    def erode(self, mask, size, iterations=1):
        if iterations == 0:
            return mask
        return cv2.erode(_u8(mask), _kernel(size), iterations=iterations).view(bool)

    def grey_opening(self, image, size):
        # A rectangular kernel: OpenCV filters rows then columns.
        kernel = np.ones((size, size), np.uint8)
        low = cv2.erode(image, kernel, borderType=cv2.BORDER_REPLICATE)
        return cv2.dilate(low, kernel, borderType=cv2.BORDER_REPLICATE)

    def box_mean(self, image, size):
        if image.dtype.kind not in "ui":
            return self._float_box_mean(image, size)
        # Backend.box_mean's float64 division, rounded once to float32 as it goes into
        # the output: no 8-byte temporary (2048²: 8.3 -> 4.6 ms, the same values).
        out = np.empty(image.shape, np.float32)
        np.divide(self.box_sums(image, size), float(size * size), out=out, dtype=np.float64, casting="same_kind")
        return out

    def _float_box_mean(self, image, size):
        return cv2.blur(image, (size, size), borderType=cv2.BORDER_REPLICATE)

    def upsample(self, grid, factor):
        rows, cols = grid.shape
        return cv2.resize(grid, (cols * factor, rows * factor), interpolation=cv2.INTER_LINEAR)

    def box_sums(self, image, size):
        # Integer running sums are exact whatever their order: int32 while the largest
        # window sum fits, else float64 (exact to 2**53).
        depth = cv2.CV_32S if np.iinfo(image.dtype).max * size * size < 2**31 else cv2.CV_64F
        return cv2.boxFilter(image, depth, (size, size), normalize=False, borderType=cv2.BORDER_REPLICATE)

    def max_filter(self, labels, square=True):
        kernel = _SQUARE if square else _CROSS
        if labels.dtype in (np.uint8, np.uint16):
            return cv2.dilate(labels, kernel, borderType=cv2.BORDER_REPLICATE)
        # float32 holds every label below 2**24 exactly; OpenCV has no int32 dilate.
        f = cv2.dilate(labels.astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
        return f.astype(labels.dtype)

    def grow_labels(self, labels, region, max_steps=255, check_every=8):
        # The same growth as Backend.grow_labels (each step reads the previous step's
        # labels, square and cross in turn, the larger label wins), computed on the
        # still-unlabelled region pixels only: 8 gathers over a few % of the frame per
        # step instead of whole-frame filters.
        rows, cols = labels.shape
        width = cols + 2
        framed = np.zeros((rows + 2, cols + 2), np.int32)  # a zero frame: no wrap-around
        framed[1:-1, 1:-1] = labels
        free = np.zeros(framed.shape, bool)
        free[1:-1, 1:-1] = region & (labels == 0)
        flat, todo = framed.ravel(), np.flatnonzero(free)
        square = (-width - 1, -width, -width + 1, -1, 1, width - 1, width, width + 1)
        cross = (-width, -1, 1, width)
        for step in range(1, max_steps + 1):
            offsets = square if step % 2 == 1 else cross
            best = flat[todo + offsets[0]]
            for offset in offsets[1:]:
                np.maximum(best, flat[todo + offset], out=best)
            got = best > 0
            if not got.any():
                # Done only when a square step finds nothing: a cross step that does may
                # leave a pixel the next square step reaches diagonally.
                if offsets is square:
                    break
                continue
            flat[todo[got]] = best[got]
            todo = todo[~got]
        return framed[1:-1, 1:-1].copy()

    def octagon_max(self, image, steps):
        if steps <= 0:
            return image
        # One rectangular dilation (OpenCV filters rows then columns), then the cross
        # steps as diamonds of radius up to 3: per unit of radius the cheapest footprint
        # (2048², uint16: a diamond of 3 ~0.9 ms a radius, a cross 1.6 ms; larger ones
        # cost more again). Ten steps: 27 -> 8 ms (uint16), 6.6 -> 3.4 ms (uint8).
        side = 2 * ((steps + 1) // 2) + 1
        out = cv2.dilate(image, np.ones((side, side), np.uint8), borderType=cv2.BORDER_REPLICATE)
        radius = steps // 2
        while radius:
            step = min(radius, 3)
            out = cv2.dilate(out, _diamond(step), borderType=cv2.BORDER_REPLICATE)
            radius -= step
        return out

    def min_filter(self, labels):
        f = cv2.erode(labels.astype(np.float32), _CROSS, borderType=cv2.BORDER_REPLICATE)
        return f.astype(np.int32)

    def fill_holes(self, mask):
        # A one-pixel background frame joins all border background into one region,
        # so one flood from the corner reaches it even when a cell covers pixel (0, 0).
        framed = cv2.copyMakeBorder(_u8(mask), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        cv2.floodFill(framed, None, (0, 0), 2)
        return framed[1:-1, 1:-1] != 2  # all but the border-connected background

    def label(self, mask, ordered=True, connectivity=8):
        # SAUF (CCL_WU) numbers components in raster order of their first pixel, as
        # scipy/cupyx ndimage.label do; OpenCV's default algorithm does not. BBDT numbers
        # them otherwise but costs less from 4096² up (an empty or sparse mask: ~18 against
        # ~40 ms; about the same at 2048²).
        algorithm = cv2.CCL_WU if ordered else cv2.CCL_BBDT
        n, labels = cv2.connectedComponentsWithAlgorithm(_u8(mask), _connectivity(connectivity), cv2.CV_32S,
                                                         algorithm)
        return labels, n - 1

    def distance_to(self, mask):
        # DIST_MASK_PRECISE is the exact Euclidean transform; the article's 5x5 mask is an
        # approximation that other backends (scipy/cupyx EDT) could not reproduce.
        return cv2.distanceTransform(_u8(~mask), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    def watershed(self, landscape, markers):
        # As many parts as OpenCV has threads: one thread (as in Dask workers) is the
        # single call, with no thread of our own on top. Below 1024 x 1024 the threads
        # cost about what they save (measured).
        parts = cv2.getNumThreads() if markers.size >= 1 << 20 else 1
        return _watershed(landscape, markers, parts)

    def cut_notches(self, where, ids, shape, n, depth, sharpness, piece, whole):
        # Each object's pixels in turn (sorted by label), drawn into a box with a pixel of
        # margin all round: the contour never runs along the box's edge.
        order = np.argsort(ids, kind="stable")
        rows, cols = np.divmod(where[order], shape[1])
        new = ids[order].astype(np.int32)
        starts = np.flatnonzero(np.diff(new, prepend=-1))
        for start, stop in zip(starts, np.append(starts[1:], len(new))):
            r, c = rows[start:stop], cols[start:stop]
            r, c = r - (r.min() - 1), c - (c.min() - 1)
            mask = np.zeros((r.max() + 2, c.max() + 2), np.uint8)
            mask[r, c] = 1
            for extra in _notch_pieces(mask, depth, sharpness, piece, whole, 3)[1:]:
                n += 1
                new[start:stop][extra[r, c] > 0] = n
        out = np.empty_like(new)
        out[order] = new
        return out, n


def _sobel(image, rows=None, out=None):
    """`Backend.sobel` of ``image``; with ``rows`` (start, stop) only those rows' magnitude, into ``out``."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    if rows is not None:
        gx, gy = gx[rows[0] : rows[1]], gy[rows[0] : rows[1]]
    # Not cv2.magnitude, which fuses the multiply-add: rounding each step the way
    # the array backends do keeps the magnitude, and so the threshold, bit-identical.
    np.multiply(gx, gx, out=gx)
    np.multiply(gy, gy, out=gy)
    np.add(gx, gy, out=gx)
    return np.sqrt(gx, out=gx if out is None else out)


def _flood(landscape, markers, hide=None, row=0):
    """One cv2.watershed call on the whole image: the reference `_watershed` matches.

    Parameters
    ----------
    landscape : (M, N) uint8 array
    markers : (M, N) int32 array, > 0 seeds, 0 to flood
    hide : (K, N) bool array, optional
        Pixels set to the background marker 1 before flooding, from row ``row`` on.

    Returns
    -------
    (M, N) int32 array, as `Backend.watershed`.
    """
    # cv2.watershed writes -1 on the image frame whatever lies there. Run it on a
    # copy one pixel larger (frame markers 0) so the real border pixels get labels.
    rgb = cv2.copyMakeBorder(landscape, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2BGR)
    framed = cv2.copyMakeBorder(markers, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    if hide is not None:
        np.copyto(framed[1 + row : 1 + row + len(hide), 1:-1], 1, where=hide)
    cv2.watershed(rgb, framed)
    return framed[1:-1, 1:-1]


def _watershed(landscape, markers, parts, block=8):
    """`_flood`, bit for bit, run on up to ``parts`` bands of rows in parallel threads.

    cv2.watershed pops pixels one by one from 256 FIFO queues, the lowest non-empty
    first; a popped pixel takes the label of its 4-neighbours (-1 where two differ)
    and queues its unqueued neighbours. A pixel thus only reads and writes its
    4-neighbours, and seeds (markers > 0) never change. So the flood of a
    4-connected component of the domain (markers != 1), walled in by its ring of
    background 1s, goes the same way whatever else the image holds: the other
    components' pixels only interleave with its own in the queues, whose order
    among its own pixels (priority, then time queued: the raster scan, then the
    pops) is the same as if it were alone.

    Components are grouped by pooling the domain over ``block`` x ``block`` blocks:
    pixels 4-adjacent lie in blocks 4-adjacent, so a component of the pooled image
    holds whole components. Those go, in order of their middle row, to ``parts``
    groups of about equal area. Each group is flooded on the rows it spans and its
    ring, the other groups' pixels there hidden (set to 1) so as not to flood them.

    Parameters
    ----------
    landscape, markers : as `_flood`
    parts : int
        One call of `_flood` when below 2, or when one group would hold 80% of the
        domain (one confluent component, say).
    block : {8, 4}

    Returns
    -------
    (M, N) int32 array, equal to ``_flood(landscape, markers)``.
    """
    if parts < 2:
        return _flood(landscape, markers)
    rows, cols = markers.shape
    b = block
    h, w = -(-rows // b), -(-cols // b)
    domain = np.zeros((h * b, w * b), bool)
    np.not_equal(markers, 1, out=domain[:rows, :cols])
    # Any over each block's rows, then the block's b bools read as one integer.
    word = {4: np.uint32, 8: np.uint64}[b]
    pooled = (domain.reshape(h, b, -1).any(1).view(word) != 0).view(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pooled, connectivity=4)
    top, height, area = stats[1:, 1], stats[1:, 3], stats[1:, 4]
    # Each pooled component joins the group its area's midpoint falls in, counted
    # from the top by middle row. Pooled area stands for the pixels to flood.
    order = np.argsort(2 * top + height, kind="stable")
    middle = np.cumsum(area[order]) - area[order] / 2
    group = np.empty(n - 1, np.uint16)
    group[order] = middle * parts // area.sum()
    load = np.bincount(group, area, minlength=1)
    if load.max() >= 0.8 * area.sum():  # one confluent component, or nearly: not worth it
        return _flood(landscape, markers)
    groups = np.flatnonzero(load)
    owner = np.append(np.uint16(0), group + 1)[labels]  # group + 1 of each block, 0 if empty

    def flood(g):
        mine = group == g
        # The group's block rows and one more row each side: its components' rings.
        start = max(b * int(top[mine].min()) - 1, 0)
        stop = min(b * int((top[mine] + height[mine]).max()) + 1, rows)
        near = owner[start // b : -(-stop // b)]
        other = (near != g + 1) & (near > 0)
        hit = np.flatnonzero(other.any(1))
        if not hit.size:
            return start, stop, stop, stop, _flood(landscape[start:stop], markers[start:stop])
        # The other groups' blocks, from the first row holding one to the last.
        first = b * (start // b + int(hit[0]))
        hide = np.repeat(np.repeat(other[hit[0] : hit[-1] + 1], b, 0), b, 1)[:, :cols]
        lo, hi = max(first, start), min(first + len(hide), stop)
        hide = hide[lo - first : hi - first]
        return start, stop, lo, hi, _flood(landscape[start:stop], markers[start:stop], hide, lo - start)

    with ThreadPoolExecutor(len(groups)) as pool:
        done = list(pool.map(flood, groups))
    # Merged in this thread, each part's rows whole where no other group's pixel
    # lies (they are right for every pixel there), else only its own pixels: those
    # it did not hide, where it found other than 1. Rows of no part are background.
    out = np.ones(markers.shape, np.int32)
    for start, stop, lo, hi, flooded in done:
        out[start:lo] = flooded[: lo - start]
        band = flooded[lo - start : hi - start]
        np.copyto(out[lo:hi], band, where=band != 1)
        out[hi:stop] = flooded[hi - start :]
    return out


def _notch_pieces(mask, depth, sharpness, piece, whole, rounds):
    """`CpuBackend.cut_notches` of one object: its pieces, as (h, w) uint8 masks of ``mask``'s shape."""
    if rounds == 0 or np.count_nonzero(mask) < whole:
        return [mask]
    two = _notch_cut(mask, depth, sharpness, piece)
    if two is None:
        return [mask]
    return [part for k in (1, 2) for part in _notch_pieces((two == k).view(np.uint8), depth, sharpness, piece, whole,
                                                            rounds - 1)]


def _notch_cut(mask, depth, sharpness, piece):
    """``mask`` cut in two (a uint8 image of 1, 2 and 0 off the mask) at its best pair of notches, or None."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=len)
    if len(contour) < 5:
        return None
    try:
        defects = cv2.convexityDefects(contour, cv2.convexHull(contour, returnPoints=False))
    except cv2.error:  # a hull OpenCV calls "not monotonous" (self-touching contours)
        return None
    if defects is None:
        return None
    defects = defects.reshape(-1, 4)
    deep = defects[:, 3] / 256.0 >= depth  # fixed point, 8 fractional bits
    if np.count_nonzero(deep) < 2:
        return None
    points = contour[defects[deep, 2], 0].astype(np.float64)
    depths = defects[deep, 3] / 256.0
    a, b = np.triu_indices(len(points), 1)
    pinch = (depths[a] + depths[b]) / np.maximum(np.hypot(*(points[a] - points[b]).T), 1.0)
    # The most pinched pair first (ties in pair order): the first that leaves two pieces large
    # enough is the cut, so a ragged object of many notches costs a few trials, not all pairs.
    for k in np.argsort(-pinch, kind="stable"):
        if pinch[k] < sharpness:
            return None
        line = mask.copy()
        cv2.line(line, tuple(map(int, points[a[k]])), tuple(map(int, points[b[k]])), 0, 1, cv2.LINE_8)
        count, parts = cv2.connectedComponents(line, connectivity=4)
        if count < 3:
            continue
        areas = np.bincount(parts.ravel(), minlength=count)
        areas[0] = 0
        first, second = np.argsort(areas)[::-1][:2]
        if areas[second] >= piece:
            best = (parts == first).view(np.uint8) + 2 * (parts == second).view(np.uint8)
            break
    else:
        return None
    # The line and any crumbs it cut off join the piece beside them (one or two steps).
    free = (mask > 0) & (best == 0)
    while free.any():
        grown = cv2.dilate(best, _SQUARE)
        if not (grown[free] > 0).any():
            break
        best[free] = grown[free]
        free &= best == 0
    return best
