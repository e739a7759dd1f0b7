"""The backend interface: every array operation the stages need, nothing more.

Stage code (``livedead_gpu.stages``) calls only these methods, so the same
stage runs on NumPy/OpenCV or on CuPy/cuCIM. The methods written here against
``self.xp`` alone are shared by every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

UINT16_MAX = 65535


class Backend(ABC):
    """Array operations of the segmentation on one device.

    Arrays passed in and returned live on the backend's device (``self.xp``
    arrays) unless a method says otherwise. Masks are ``bool`` arrays, label
    images ``int32``.
    """

    #: short name shown in logs and results ("cpu", "gpu", ...)
    name: str
    #: the array module of the backend's arrays (numpy, cupy)
    xp = np

    # -- transfers -------------------------------------------------------
    def to_device(self, array):
        """Move a host array to the backend's device (no copy on the CPU)."""
        return self.xp.asarray(array)

    def to_host(self, array) -> np.ndarray:
        """Move an array to host memory as a NumPy array (no copy on the CPU)."""
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait for the device's queued work (for timing); nothing to wait for on the host."""

    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` is this device running out of memory (never, on the host)."""
        return False

    # -- block-max histogram -------------------------------------------
    def block_max(self, image, coarseness: int):
        """Maximum of every ``coarseness``-square block, partial edge blocks included.

        Parameters
        ----------
        image : (M, N) array
        coarseness : int

        Returns
        -------
        maxima : (ceil(M / coarseness), ceil(N / coarseness)) array, image's dtype
        """
        xp, c = self.xp, coarseness
        rows, cols = image.shape
        full = rows - rows % c
        # Rows first: a reduction over whole contiguous rows is the fast one.
        maxima = image[:full].reshape(full // c, c, cols).max(axis=1)
        if full < rows:
            maxima = xp.concatenate([maxima, image[full:].max(axis=0, keepdims=True)])
        pad = -cols % c
        if pad:
            low = xp.iinfo(image.dtype).min if image.dtype.kind in "ui" else -xp.inf
            maxima = xp.pad(maxima, ((0, 0), (0, pad)), constant_values=low)
        # Then blocks of c columns: transposed so the reduction runs over rows again.
        blocks = maxima.reshape(maxima.shape[0] * (maxima.shape[1] // c), c)
        return xp.ascontiguousarray(blocks.T).max(axis=0).reshape(maxima.shape[0], -1)

    def block_mean(self, image, coarseness: int):
        """Mean (float32) of every full ``coarseness``-square block; partial edge blocks are dropped.

        Returns
        -------
        means : (M // coarseness, N // coarseness) float32 array
        """
        xp, c = self.xp, coarseness
        rows, cols = (s - s % c for s in image.shape)
        sums = image[:rows, :cols].astype(xp.float32, copy=False).reshape(rows // c, c, cols).sum(axis=1)
        blocks = sums.reshape(-1, c)
        # Transposed so the reduction runs over rows (see block_max).
        return (xp.ascontiguousarray(blocks.T).sum(axis=0) / xp.float32(c * c)).reshape(rows // c, -1)

    def votes(self, values, length: int):
        """Counts (int64) of each integer value in ``values`` (any shape, maybe empty), ``length`` bins.

        Every value must lie in ``[0, length)``.
        """
        return self.xp.bincount(values.ravel(), minlength=length).astype(self.xp.int64, copy=False)

    def sums(self, index, weights, length: int):
        """Sum (float64) of ``weights`` over each integer value of ``index``, ``length`` bins.

        Parameters
        ----------
        index : (k,) integer array, values in ``[0, length)``; may be empty
        weights : (k,) float array
            Integer-valued weights (intensities) sum exactly in float64, so the
            order of the additions (free on a GPU) does not change the result.
        """
        return self.xp.bincount(index, weights=weights, minlength=length)

    def peak(self, votes) -> int:
        """The most frequent value of a vote histogram, ignoring value 0, as a host int.

        Ties go to the smallest value (as ``argmax``). With no vote above 0 the
        peak is 1, which is what the article's ``argmax(hist[1:]) + 1`` returns.
        """
        # The one device-to-host transfer of the threshold: a single int.
        return int(self.to_host(votes[1:].argmax())) + 1

    def order_statistic(self, values, fraction: float):
        """The value of rank ``floor(fraction * (n - 1))`` in sorted ``values`` (host scalar).

        An exact element of ``values`` (no interpolation), so every backend agrees.
        """
        return self.order_statistics(values, (fraction,))[0]

    def order_statistics(self, values, fractions):
        """`order_statistic` of each fraction, from one partition (host scalars, one transfer)."""
        flat = values.ravel()
        ks = [int(f * (flat.size - 1)) for f in fractions]
        picked = self.xp.partition(flat, ks)[self.xp.asarray(ks)]
        return [v.item() for v in self.to_host(picked)]

    # -- elementwise -----------------------------------------------------
    def quantize(self, magnitude, scale: float):
        """``floor(magnitude / scale)`` saturated to [0, 65535], as uint16.

        Parameters
        ----------
        magnitude : (M, N) float32 array, non-negative
        scale : float, >= 1
        """
        xp = self.xp
        q = magnitude if scale == 1 else magnitude * xp.float32(1.0 / scale)
        # Casting a float above 65535 to uint16 wraps (the article's bug): clip first.
        return xp.minimum(q, xp.float32(UINT16_MAX)).astype(xp.uint16)

    def greater(self, image, value):
        """``image > value`` as a bool mask."""
        return image > value

    def gradient(self, image, sigma: float):
        """`sobel` of `gaussian` of the image (of the image itself when ``sigma`` is 0).

        Returns
        -------
        (M, N) float32 array
        """
        return self.sobel(self.gaussian(image, sigma) if sigma > 0 else image)

    def by_rows(self, fn, shape):
        """Call ``fn(rows)`` for row slices that cover an image of ``shape`` (M, N) once each.

        For work done row by row (elementwise, or reading its own halo): a backend
        may run the slices in parallel, so ``fn`` writes only its own rows. Here
        one call, every row.
        """
        fn(slice(0, shape[0]))

    def by_label(self, flags, labels):
        """``flags[labels]``: an (M, N) bool image of a per-label flag.

        Parameters
        ----------
        flags : (n + 1,) bool array, ``flags[0]`` False (the background)
        labels : (M, N) int32 array, 0 background, 1..n
        """
        return flags[labels]  # one gather on the device, no sync

    def together(self, *calls):
        """The results of ``calls`` (functions of no argument), in order.

        For independent stages of one frame: a backend may run them at once. Here
        one after the other.
        """
        return [call() for call in calls]

    # -- the rest is backend-specific ------------------------------------
    @abstractmethod
    def gaussian(self, image, sigma: float):
        """Gaussian smoothing, float32 out, kernel radius ``int(4 * sigma + 0.5)``.

        Border "reflect 101", as `sobel`. Backends agree to float rounding, not bit for bit.

        Parameters
        ----------
        image : (M, N) uint8, uint16 or float32 array
        sigma : float, > 0
        """

    @abstractmethod
    def sobel(self, image):
        """Sobel gradient magnitude with OpenCV's 3x3 unnormalised kernels.

        Border "reflect 101" (``cv2.BORDER_DEFAULT``, SciPy ``mode="mirror"``).

        Parameters
        ----------
        image : (M, N) uint8, uint16 or float32 array

        Returns
        -------
        magnitude : (M, N) float32 array, ``sqrt(gx**2 + gy**2)``
        """

    @abstractmethod
    def dilate(self, mask, size: int, iterations: int = 1):
        """Binary dilation by the OpenCV ellipse of odd ``size``; outside pixels count as 0."""

    @abstractmethod
    def erode(self, mask, size: int, iterations: int = 1):
        """Binary erosion by the OpenCV ellipse of odd ``size``; outside pixels are ignored."""

    def close(self, mask, size: int):
        """Binary closing (dilate then erode) by the OpenCV ellipse of odd ``size``."""
        if size == 1:
            return mask
        return self.erode(self.dilate(mask, size), size)

    @abstractmethod
    def fill_holes(self, mask):
        """Turn background not connected to the image border into foreground."""

    @abstractmethod
    def label(self, mask, ordered: bool = True, connectivity: int = 8):
        """Connected components.

        Parameters
        ----------
        mask : (M, N) bool array
        ordered : bool
            False for callers that only count or measure the components: their
            numbering may then be any, if a backend labels faster that way.
        connectivity : {8, 4}
            Neighbours of a pixel: 4 is those `fill_holes` floods through.

        Returns
        -------
        labels : (M, N) int32 array, 0 background, 1..n in raster order of first pixel
            (with ``ordered=False``: 1..n in any order)
        n : int
        """

    @abstractmethod
    def distance_to(self, mask):
        """Exact Euclidean distance of every pixel to the nearest True pixel, float32."""

    @abstractmethod
    def watershed(self, landscape, markers):
        """OpenCV's marker watershed.

        Parameters
        ----------
        landscape : (M, N) uint8 array
        markers : (M, N) int32 array, > 0 seeds, 0 to flood

        Returns
        -------
        labels : (M, N) int32 array, the marker each pixel was flooded from, -1 on
            the lines between regions. Lines on the image frame are not drawn
            (OpenCV always writes -1 there; that is no boundary).
        """

    @abstractmethod
    def cut_notches(self, where, ids, shape, n: int, depth: float, sharpness: float, piece: float, whole: float):
        """Cut objects pinched at two notches of their outline along the line between them.

        The notches are the convexity defects of an object's outer contour (OpenCV's
        ``convexityDefects``) at least ``depth`` px deep. Of every pair of them, the
        cut joins the pair with the largest (depth + depth) / length, if at least
        ``sharpness``, that leaves two pieces (4-connected, the line taken out) of at
        least ``piece`` px each; the line's pixels then join the piece beside them.
        A piece of at least ``whole`` px is cut again the same way, up to three cuts
        deep. Runs on the host (a loop over the objects): a device backend sends the
        objects' pixels out and their new labels back, explicitly.

        Parameters
        ----------
        where : (k,) int64 array, flat indices (C order) into an image of ``shape``
        ids : (k,) int32 array, the label of each of those pixels: the objects to cut, whole
        shape : (int, int)
        n : int, the largest label in the image

        Returns
        -------
        new : (k,) int32 array, each pixel's label after the cuts: an object's first piece
            keeps its label, the others are numbered n + 1, n + 2, ... in order of the labels cut
        n : int, the largest label now
        """

    @abstractmethod
    def grey_opening(self, image, size: int):
        """Grey-level opening (minimum then maximum) over a ``size`` square, edges replicated.

        Parameters
        ----------
        image : (M, N) float32 array
        size : int, odd
        """

    def box_mean(self, image, size: int):
        """Mean over the centred ``size`` square (odd), edges replicated; float32 out.

        Parameters
        ----------
        image : (M, N) uint8, uint16 or float32 array
            Integers: the window sums are exact and the mean is rounded once (float64
            division, then float32), so every backend, and any crop that holds the
            window, gives the very same value (a mosaic's tile as the whole image).
            float32: running sums, which backends and crops agree on to float rounding.
        size : int, odd
        """
        if image.dtype.kind in "ui":
            return (self.box_sums(image, size) / float(size * size)).astype(self.xp.float32)
        return self._float_box_mean(image, size)

    def box_sums(self, image, size: int):
        """Exact sums over the centred ``size`` square (odd) of an integer image, edges replicated.

        Returned as float64, or as int32 where a backend's sums fit it: the same values.

        A summed-area table: cumulative sums of integers stay exact in float64 up to
        2**53 (a uint16 image of 35,000² pixels).
        """
        xp, r = self.xp, size // 2
        table = xp.zeros((image.shape[0] + 2 * r + 1, image.shape[1] + 2 * r + 1), xp.float64)
        table[1:, 1:] = xp.pad(image, r, mode="edge")
        table = xp.cumsum(xp.cumsum(table, axis=0), axis=1)
        rows, cols = image.shape
        return (table[size:, size:] - table[:rows, size:] - table[size:, :cols]) + table[:rows, :cols]

    @abstractmethod
    def upsample(self, grid, factor: int):
        """Bilinear enlargement of a small grid by a whole ``factor``.

        Pixel centres line up (as ``cv2.resize`` and ``ndimage.zoom(grid_mode=True)``):
        output row ``y`` reads grid row ``(y + 0.5) / factor - 0.5``; past the outer
        centres the edge value holds. Backends agree to float32 rounding.

        Parameters
        ----------
        grid : (H, W) float32 array
        factor : int

        Returns
        -------
        (H * factor, W * factor) float32 array
        """

    @abstractmethod
    def _float_box_mean(self, image, size: int):
        """`box_mean` of a float32 image: running sums, backends agree to float rounding."""

    @abstractmethod
    def max_filter(self, labels, square: bool = True):
        """Maximum over the 3x3 square (or, ``square=False``, the 4-neighbour cross) of an
        integer image (uint8, uint16 or int32 labels), same dtype out; the image edge is replicated."""

    def octagon_max(self, image, steps: int):
        """Maximum over an octagon: ``steps`` calls of `max_filter`, square and cross in turn.

        Backends compute it as one square of side ``2 * ceil(steps / 2) + 1`` and then
        a diamond of radius ``steps // 2`` (the cross steps): both windows are symmetric
        and hold every point between the centre and any of theirs, so neither their
        order nor the replicated edge (a replicated pixel copies one the window holds)
        changes the maximum. This plain loop is the definition they are tested against.

        Parameters
        ----------
        image : (M, N) uint8 or uint16 array
        steps : int, >= 0

        Returns
        -------
        (M, N) array, ``image``'s dtype
        """
        for step in range(steps):
            image = self.max_filter(image, square=step % 2 == 0)
        return image

    @abstractmethod
    def min_filter(self, labels):
        """Minimum over the 4-neighbourhood (a 3x3 cross) of an int32 label image; the edge is replicated."""

    def grow_labels(self, labels, region, max_steps: int = 255, check_every: int = 8):
        """Grow labels one pixel per step into ``region``, on the device.

        Each step gives every unlabelled region pixel the largest label among its
        neighbours, 8 and 4 in turn (octagonal steps, closer to Euclidean than
        either alone), so each pixel ends with a nucleus nearest along paths inside
        the region (the larger label wins ties). Region pixels no label can reach
        stay 0.

        Parameters
        ----------
        labels : (M, N) int32 array, the seeds (0 elsewhere)
        region : (M, N) bool array, where labels may grow (holds the seeds)
        max_steps : int, the farthest growth in pixels
        check_every : int
            Steps between convergence checks, made after square steps (a cross step
            that assigns nothing may leave a pixel the next square step reaches
            diagonally); each check reads one bool back to the host.

        Returns
        -------
        (M, N) int32 array
        """
        xp = self.xp
        free = region & (labels == 0)
        for step in range(1, max_steps + 1):
            grown = xp.where(free, self.max_filter(labels, square=step % 2 == 1), 0)
            labels = labels + grown  # grown is 0 where labels are set, and off the region
            free &= grown == 0
            # Stop once a square step assigns nothing: one bool to the host every few steps.
            if step % 2 == 1 and (step - 1) % check_every == 0 and not bool(self.to_host((grown > 0).any())):
                break
        return labels

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def ellipse(size: int) -> np.ndarray:
    """The ``cv2.MORPH_ELLIPSE`` footprint of odd ``size``, as a (size, size) bool host array."""
    import cv2  # only for the footprint's exact shape; same on every backend

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype(bool)


def connectivity(value) -> int:
    """``value`` checked as a `Backend.label` connectivity: 4 or 8."""
    if isinstance(value, bool) or value not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (neighbours), got {value!r}")
    return int(value)
