"""The GPU backend, written against array namespaces.

`ArrayBackend` takes an array module ``xp`` (cupy), an ndimage module ``ndi``
(cupyx.scipy.ndimage) and an skimage module ``ski`` (cucim.skimage). On a GPU it
is built with those; CI builds the very same class with numpy, scipy.ndimage and
skimage, so every line here runs in every CI run and is checked against the
OpenCV backend.

Hole filling and the watershed have no GPU counterpart that matches OpenCV: they
run on the CPU backend, with explicit transfers of just the arrays they need,
counted in `transfers`.
"""

from __future__ import annotations

import inspect

import numpy as np

from .base import Backend, connectivity as _connectivity, ellipse
from .cpu import CpuBackend

#: How to get the GPU packages (livedead-gpu itself is installed from its checkout, not PyPI).
INSTALL = ("pip install cupy-cuda12x cucim-cu12 (CUDA 12; cupy-cuda13x cucim-cu13 for CUDA 13), "
           "or in the livedead-gpu checkout pip install -e '.[gpu-cu12]' (or '.[gpu-cu13]')")


def rectangles(size: int) -> list[tuple[int, int]]:
    """The OpenCV ellipse of odd ``size`` as a union of centred rectangles (height, width).

    Row ``dy`` of the ellipse is a centred run of half-width ``w(dy)``, widest in the
    middle row, so the ellipse is the union, over each distinct half-width ``w``, of
    the rectangle ``2 h + 1`` high and ``2 w + 1`` wide, ``h`` the farthest row at
    least that wide. Dilating by each rectangle is two 1-D maximum filters, with no
    footprint for ndimage to check on the host (see `ArrayBackend._morph`).
    """
    rows = ellipse(size)
    r = size // 2
    half = [int(row.sum()) // 2 for row in rows]
    return [(2 * max(abs(dy - r) for dy in range(size) if half[dy] >= w) + 1, 2 * w + 1)
            for w in sorted(set(half))]


class ArrayBackend(Backend):
    """The backend of any NumPy-like namespace trio.

    Parameters
    ----------
    xp : module
        Array module (``cupy``, or ``numpy`` as a stand-in).
    ndi : module
        ``cupyx.scipy.ndimage`` (or ``scipy.ndimage``).
    ski : module
        ``cucim.skimage`` (or ``skimage``).
    name : str
    scatter_add : callable, optional
        ``scatter_add(a, indices, value)`` adding in place with repeated indices
        (``cupy.add.at``); ``numpy.add.at`` by default.
    """

    def __init__(self, xp, ndi, ski, name="gpu", scatter_add=np.add.at):
        self.xp, self.ndi, self.ski, self.name = xp, ndi, ski, name
        self._scatter_add = scatter_add
        self._cpu = CpuBackend()
        self._rectangles = {}
        # cupyx's transform returns float64 unless told otherwise (scipy's has no such option).
        edt = inspect.signature(ndi.distance_transform_edt).parameters
        self._edt_options = {"float64_distances": False} if "float64_distances" in edt else {}
        #: host<->device copies made so far (each `to_host`/`to_device` call counts one)
        self.transfers = 0

    # -- transfers -------------------------------------------------------
    def to_device(self, array):
        self.transfers += 1
        return self.xp.asarray(array)

    def to_host(self, array):
        self.transfers += 1
        # cupy.asnumpy copies device to host (and synchronises); numpy has none.
        return getattr(self.xp, "asnumpy", np.asarray)(array)

    def synchronize(self):
        cuda = getattr(self.xp, "cuda", None)  # none on the NumPy stand-in
        if cuda is not None:
            cuda.Device().synchronize()

    def is_out_of_memory(self, error):
        # cupy.cuda.memory.OutOfMemoryError, matched by name so no CuPy import is needed
        # here. An allocation inside a Thrust sort (sort, unique, lexsort, cuCIM's label)
        # fails in a C callback that cannot pass that exception on: what arrives is
        # another error naming CUDA's allocation failure.
        if type(error).__name__ == "OutOfMemoryError":
            return True
        text = str(error)
        return "out of memory" in text.lower() or "cudaErrorMemoryAllocation" in text

    def votes(self, values, length):
        # Not xp.bincount: CuPy's reads max(values) and any(values < 0) back to the host
        # (two hidden syncs), and raises on an empty input (the max of nothing). The
        # length is known, so add the votes in place: uint64 counters (CUDA has a 64-bit
        # unsigned atomicAdd), viewed as int64.
        counts = self.xp.zeros(length, self.xp.uint64)
        self._scatter_add(counts, values.ravel(), self.xp.uint64(1))
        return counts.view(self.xp.int64)

    def sums(self, index, weights, length):
        # As votes: no hidden sync, and an empty index gives zeros.
        out = self.xp.zeros(length, self.xp.float64)
        self._scatter_add(out, index, weights.astype(self.xp.float64, copy=False))
        return out

    # -- filters -----------------------------------------------------------
    def _morph(self, mask, size, iterations, filter_, combine, outside):
        # Not ndi.binary_dilation/erosion: with a footprint that is not all ones they
        # read it back to the host twice a call (count_nonzero, the centre). Each of the
        # ellipse's rectangles is two 1-D filters instead, combined by OR (dilation) or
        # AND (erosion): exact, as a union of footprints dilates to the union.
        if size not in self._rectangles:
            self._rectangles[size] = rectangles(size)
        u = mask.view(self.xp.uint8)
        for _ in range(iterations):
            parts = [filter_(u, size=shape, mode="constant", cval=outside) for shape in self._rectangles[size]]
            u = parts[0]
            for part in parts[1:]:
                combine(u, part, out=u)
        return u.view(bool)

    def gaussian(self, image, sigma):
        return self.ndi.gaussian_filter(image.astype(self.xp.float32), sigma, mode="mirror", truncate=4.0)

    def sobel(self, image):
        xp, ndi = self.xp, self.ndi
        f = image.astype(xp.float32)
        # ndimage's sobel is OpenCV's unnormalised kernel; "mirror" is OpenCV's reflect-101.
        # The input is float32 because ndimage keeps the input dtype.
        gx = ndi.sobel(f, axis=1, mode="mirror")
        gy = ndi.sobel(f, axis=0, mode="mirror")
        return xp.sqrt(gx * gx + gy * gy)

    def dilate(self, mask, size, iterations=1):
        return self._morph(mask, size, iterations, self.ndi.maximum_filter, self.xp.maximum, 0)

    def erode(self, mask, size, iterations=1):
        # Outside pixels count as 1: they do not erode, as in OpenCV.
        return self._morph(mask, size, iterations, self.ndi.minimum_filter, self.xp.minimum, 1)

    def label(self, mask, ordered=True, connectivity=8):
        # skimage's label: connectivity 2 is 8 neighbours, 1 is 4, numbered in raster order
        # of first pixel as OpenCV's SAUF. The count comes back to the host (a sync):
        # callers need it as an int.
        labels, n = self.ski.measure.label(mask, connectivity=_connectivity(connectivity) // 4, return_num=True)
        return labels.astype(self.xp.int32, copy=False), int(n)

    def grey_opening(self, image, size):
        low = self.ndi.minimum_filter(image, size=size, mode="nearest")
        return self.ndi.maximum_filter(low, size=size, mode="nearest")

    def _float_box_mean(self, image, size):
        return self.ndi.uniform_filter(image, size=size, mode="nearest")

    def upsample(self, grid, factor):
        return self.ndi.zoom(grid, factor, order=1, mode="nearest", grid_mode=True)

    def max_filter(self, labels, square=True):
        # size=3 is separable and footprint-free; a footprint would cost two host reads a
        # call (see _morph), and grow_labels calls this once a step.
        if square:
            return self.ndi.maximum_filter(labels, size=3, mode="nearest")
        return self._cross(labels, self.xp.maximum)

    def octagon_max(self, image, steps):
        if steps <= 0:
            return image
        # The square part in one separable call; the cross steps stay `max_filter`'s
        # 5-point maxima (a diamond footprint would cost host reads, see _morph).
        out = self.ndi.maximum_filter(image, size=2 * ((steps + 1) // 2) + 1, mode="nearest")
        for _ in range(steps // 2):
            out = self.max_filter(out, square=False)
        return out

    def min_filter(self, labels):
        return self._cross(labels, self.xp.minimum)

    def _cross(self, labels, combine):
        """``combine`` over the pixel and its 4 neighbours, the edge replicated."""
        framed = self.xp.pad(labels, 1, mode="edge")
        out = combine(framed[1:-1, 1:-1], framed[:-2, 1:-1])
        for shifted in (framed[2:, 1:-1], framed[1:-1, :-2], framed[1:-1, 2:]):
            combine(out, shifted, out=out)
        return out

    def distance_to(self, mask):
        return self.ndi.distance_transform_edt(~mask, **self._edt_options).astype(self.xp.float32, copy=False)

    # -- CPU fallbacks (OpenCV), explicit transfers ------------------------------
    def fill_holes(self, mask):
        return self.to_device(self._cpu.fill_holes(self.to_host(mask)))

    def watershed(self, landscape, markers):
        flooded = self._cpu.watershed(self.to_host(landscape), self.to_host(markers))
        return self.to_device(flooded)

    def cut_notches(self, where, ids, shape, n, depth, sharpness, piece, whole):
        new, n = self._cpu.cut_notches(self.to_host(where), self.to_host(ids), shape, n, depth, sharpness, piece,
                                       whole)
        return self.to_device(new), n


def cupy_backend(device: int | None = None) -> ArrayBackend:
    """The CuPy/cuCIM backend on ``device`` (the current device when None).

    ``device`` is made current in the calling thread only (CuPy's current device is
    per thread): from other threads, use the backend inside ``with
    cupy.cuda.Device(device):``. Dask-CUDA workers need neither: each sees only its
    own GPU, as device 0.

    Raises
    ------
    RuntimeError
        CuPy or cuCIM is not installed (naming the pip extra), or no such device.
    """
    try:
        import cupy
        import cupyx.scipy.ndimage as ndi
    except ImportError as e:
        raise RuntimeError(f"backend='gpu' needs CuPy ({e.name} is missing): {INSTALL}") from None
    try:
        import cucim.skimage as ski
    except ImportError:
        raise RuntimeError(f"backend='gpu' needs cuCIM (cucim is missing): {INSTALL}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError without a driver
        raise RuntimeError(f"backend='gpu': CuPy sees no CUDA device ({e})") from None
    if device is not None:
        if not 0 <= device < count:
            raise RuntimeError(f"backend='gpu:{device}': CuPy sees {count} device(s) (0..{count - 1})")
        cupy.cuda.Device(device).use()
    name = "gpu" if device is None else f"gpu:{device}"
    # cupy.add.at, not cupyx.scatter_add (deprecated since CuPy 12): the same kernel.
    return ArrayBackend(cupy, ndi, ski, name=name, scatter_add=cupy.add.at)
