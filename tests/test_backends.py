"""The GPU backend's code, run through NumPy/SciPy/scikit-image stand-ins (every CI run)
and through CuPy/cuCIM (GPU machines), checked against the OpenCV backend."""

import types

import warnings

import numpy as np
import pytest
import scipy.ndimage
import skimage

from livedead_gpu import SegmentParams, get_backend, segment_frame, stages, synthetic
from livedead_gpu.backends import CpuBackend
from livedead_gpu.backends.base import Backend, ellipse
from livedead_gpu.backends.gpu import ArrayBackend, rectangles
from livedead_gpu.mosaic import segment_mosaic

cpu = CpuBackend()


class Spy:
    """A module proxy that records which of its functions (submodules' as "sub.name") were called."""

    def __init__(self, module, called=None, prefix=""):
        self._module, self._prefix = module, prefix
        self.called = set() if called is None else called

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if isinstance(attr, types.ModuleType):
            return Spy(attr, self.called, f"{self._prefix}{name}.")
        if not callable(attr):
            return attr

        def spied(*args, **kwargs):
            self.called.add(self._prefix + name)
            return attr(*args, **kwargs)

        return spied


def standin():
    return ArrayBackend(np, Spy(scipy.ndimage), Spy(skimage), name="standin")


def cupy_backend():
    return get_backend("gpu")


@pytest.fixture(params=[pytest.param(standin, id="standin"), pytest.param(cupy_backend, id="cupy", marks=pytest.mark.gpu)])
def be(request):
    return request.param()


def host(be, a):
    """To the host, checking the array really is the backend's own type."""
    assert isinstance(a, be.xp.ndarray), f"{type(a)} is not a {be.xp.__name__} array"
    return be.to_host(a)


@pytest.mark.parametrize("shape", [(64, 64), (100, 37), (257, 130)])
@pytest.mark.parametrize("coarseness", [3, 16])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_threshold_identical(be, shape, coarseness, dtype):
    rng = np.random.default_rng(sum(shape) + coarseness)
    image = rng.gamma(2, 20 if dtype == np.uint8 else 3000, shape).clip(0, np.iinfo(dtype).max).astype(dtype)
    for offset in (None, 1.2):
        assert stages.block_max_threshold(be.to_device(image), offset, coarseness, be) == stages.block_max_threshold(
            image, offset, coarseness, cpu
        )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_sobel_close(be, dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, (70, 90)).astype(dtype)
    np.testing.assert_allclose(host(be, be.sobel(be.to_device(image))), cpu.sobel(image), rtol=1e-6)


@pytest.mark.parametrize("size", [3, 5, 7, 9])
@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_morphology_identical(be, size, iterations):
    rng = np.random.default_rng(size * 10 + iterations)
    mask = rng.random((60, 75)) < 0.08
    mask[:, :3] = True  # foreground on the border: OpenCV ignores outside pixels
    d = be.to_device(mask)
    assert (host(be, be.dilate(d, size, iterations)) == cpu.dilate(mask, size, iterations)).all()
    assert (host(be, be.erode(d, size, iterations)) == cpu.erode(mask, size, iterations)).all()
    assert (host(be, be.close(d, size)) == cpu.close(mask, size)).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(61, 75), (9, 40), (5, 7)])
def test_octagon_max_is_the_loop(be, dtype, shape):
    """One square and a diamond (or cross steps) equal the steps of 3x3 maxima in turn,
    the replicated edge included, also where the window is larger than the image."""
    rng = np.random.default_rng(shape[0] * 3 + shape[1])
    image = rng.integers(0, np.iinfo(dtype).max, shape).astype(dtype)
    image[rng.random(shape) < 0.9] = 0  # sparse peaks: the window's shape shows
    for steps in (0, 1, 2, 3, 6, 7, 10, 15):
        ref = Backend.octagon_max(cpu, image, steps)  # the plain loop
        for backend, arg in ((cpu, image), (be, be.to_device(image))):
            got = backend.octagon_max(arg, steps)
            got = host(be, got) if backend is be else got
            assert got.dtype == dtype
            assert np.array_equal(got, ref), (backend.name, steps)


@pytest.mark.parametrize("seed", range(4))
def test_grow_labels_is_the_array_growth(be, seed):
    """The OpenCV backend's compact growth equals Backend.grow_labels step for step: seeds on
    the image's edge, labels off the region (read, never grown from it), a cap on the steps."""
    rng = np.random.default_rng(seed)
    shape = [(40, 57), (33, 33), (7, 90), (64, 48)][seed]
    region = scipy.ndimage.binary_dilation(rng.random(shape) < 0.15, iterations=2)
    labels = np.where(rng.random(shape) < 0.03, rng.integers(1, 50, shape), 0).astype(np.int32)
    labels[0, :3] = 7  # seeds on the edge
    labels[-1, -1] = 49
    for steps in (1, 2, 5, 255):
        ref = Backend.grow_labels(standin(), labels, region, max_steps=steps, check_every=1)
        got = cpu.grow_labels(labels.copy(), region.copy(), max_steps=steps)
        assert got.dtype == np.int32 and got.flags.c_contiguous
        assert np.array_equal(got, ref), steps
        assert np.array_equal(host(be, be.grow_labels(be.to_device(labels), be.to_device(region), max_steps=steps)), ref)
    # Fortran-ordered inputs (a transposed frame's) give the same labels.
    got = cpu.grow_labels(np.asfortranarray(labels), np.asfortranarray(region))
    assert np.array_equal(got, Backend.grow_labels(standin(), labels, region))


@pytest.mark.parametrize("shape", [(80, 80), (33, 250)])
def test_unordered_label_is_the_same_partition(be, shape):
    rng = np.random.default_rng(shape[1])
    mask = scipy.ndimage.binary_opening(rng.random(shape) < 0.45)
    ref, n = cpu.label(mask)
    for backend, arg in ((cpu, mask), (be, be.to_device(mask))):
        labels, m = backend.label(arg, ordered=False)
        labels = host(be, labels) if backend is be else labels
        assert m == n and labels.dtype == np.int32
        assert ((labels > 0) == mask).all()
        # One label for one label: the pairs (ordered, unordered) are n distinct ones.
        pairs = np.unique(np.stack([ref[mask], labels[mask]]), axis=1)
        assert pairs.shape[1] == n and len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == n


def test_by_label_is_the_lookup(be):
    rng = np.random.default_rng(3)
    labels = np.where(rng.random((50, 70)) < 0.3, rng.integers(1, 12, (50, 70)), 0).astype(np.int32)
    flags = rng.random(12) < 0.5
    flags[0] = False
    for lab in (labels, np.asfortranarray(labels)):
        assert np.array_equal(cpu.by_label(flags, lab), flags[labels])
        assert np.array_equal(host(be, be.by_label(be.to_device(flags), be.to_device(lab))), flags[labels])


def test_label_distance(be):
    rng = np.random.default_rng(7)
    mask = scipy.ndimage.binary_opening(rng.random((80, 80)) < 0.4)
    labels, n = be.label(be.to_device(mask))
    ref, n_ref = cpu.label(mask)
    assert n == n_ref
    assert (host(be, labels) == ref).all(), "labels must come in OpenCV's raster order"
    np.testing.assert_allclose(host(be, be.distance_to(be.to_device(mask))), cpu.distance_to(mask), atol=1e-4)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_cell_area_identical_without_smoothing(be, bit_depth):
    # Integer images through integer Sobel kernels: exact in float32 on every backend.
    f = synthetic.make_frame(shape=(192, 160), n_cells=12, bit_depth=bit_depth, seed=bit_depth)
    p = SegmentParams(smoothing=0)
    got = stages.cell_area(be.to_device(f.brightfield), p, be)
    ref = stages.cell_area(f.brightfield, p, cpu)
    assert got.threshold == ref.threshold
    assert (host(be, got.mask) == ref.mask).all()
    p = SegmentParams(smoothing=0, cell_threshold="block-max")
    got = stages.cell_area(be.to_device(f.brightfield), p, be)
    ref = stages.cell_area(f.brightfield, p, cpu)
    assert (got.threshold, got.scale) == (ref.threshold, ref.scale)
    assert (host(be, got.mask) == ref.mask).all()


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_cell_area_smoothed(be, bit_depth):
    f = synthetic.make_frame(shape=(192, 160), n_cells=12, bit_depth=bit_depth, seed=bit_depth)
    got = stages.cell_area(be.to_device(f.brightfield), SegmentParams(), be)
    ref = stages.cell_area(f.brightfield, SegmentParams(), cpu)
    # The Gaussian before the Sobel is float arithmetic summed in another order:
    # thresholds agree to float rounding, masks but for pixels on the threshold.
    assert got.threshold == pytest.approx(ref.threshold, rel=1e-5)
    assert (host(be, got.mask) == ref.mask).mean() >= 0.9999


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_noise_blocks(be, dtype):
    from livedead_gpu.stages.gradient import noise_blocks

    rng = np.random.default_rng(3)
    image = rng.integers(1, 200, (70, 50)).astype(dtype)
    image[:32, :16] = 200          # clipped: blocks (0, 0) and (1, 0) of one value
    image[40, 40] = 0              # padding: block (2, 2)
    image[64:, 48:] = 7            # a constant partial edge block (4, 3)
    want = np.ones((5, 4), bool)
    want[0, 0] = want[1, 0] = want[2, 2] = want[4, 3] = False
    got = noise_blocks(be.to_device(image), 16, be)
    assert np.array_equal(host(be, got), want)
    assert np.array_equal(noise_blocks(image, 16, cpu), want)


@pytest.mark.parametrize("sigma", [0.6, 1.0, 1.1, 2.1, 5.1])
def test_gaussian_kernel_radius(be, sigma):
    # OpenCV sized its kernel itself, a tap wider than ndimage's where 4 sigma % 1 is in [0.25, 0.5)
    image = np.zeros((61, 61), np.float32)
    image[30, 30] = 1
    radius = int(4 * sigma + 0.5)
    for got in (host(be, be.gaussian(be.to_device(image), sigma)), cpu.gaussian(image, sigma)):
        assert got[30, 30 + radius] > 0 and got[30, 30 + radius + 1] == 0
    np.testing.assert_allclose(host(be, be.gaussian(be.to_device(image), sigma)), cpu.gaussian(image, sigma),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_frame_parity(be, seed):
    f = synthetic.make_frame(shape=(256, 256), n_cells=22, dead_fraction=0.4, bit_depth=12, seed=seed)
    got = segment_frame(f.brightfield, f.hoechst, f.draq7, backend=be)
    ref = segment_frame(f.brightfield, f.hoechst, f.draq7, backend="cpu")
    assert got.backend == be.name
    assert (got.classes == ref.classes).mean() >= 0.999
    assert (got.n_live, got.n_dead) == (ref.n_live, ref.n_dead)
    for key, value in ref.thresholds.items():
        assert got.thresholds[key] == (value if value is None else pytest.approx(value, rel=1e-5)), key


def test_standin_runs_the_gpu_code_path():
    be = standin()
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, seed=4)
    segment_frame(f.brightfield, f.hoechst, f.draq7, backend=be)
    assert {"sobel", "maximum_filter", "minimum_filter", "distance_transform_edt"} <= be.ndi.called
    assert "measure.label" in be.ski.called


@pytest.mark.parametrize("size", range(1, 100, 2))
def test_ellipse_rectangles(size):
    union = np.zeros((size, size), bool)
    for height, width in rectangles(size):
        top, left = (size - height) // 2, (size - width) // 2
        union[top : top + height, left : left + width] = True
    assert (union == ellipse(size)).all()


@pytest.mark.parametrize("dead_fraction", [0.0, 0.5])
def test_no_bincount_on_the_device(monkeypatch, dead_fraction):
    # CuPy's bincount raises on an empty input (e.g. a field without Draq7) and reads two
    # values back to the host: the stages count through Backend.votes/sums instead.
    be = standin()
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, dead_fraction=dead_fraction, seed=6)
    empty = np.zeros_like(f.draq7)

    def refuse(*args, **kwargs):
        raise AssertionError("xp.bincount called on the array backend")

    monkeypatch.setattr(np, "bincount", refuse)
    for params in (SegmentParams(), SegmentParams.from_preset("article"), SegmentParams(dead_call="touch")):
        segment_frame(f.brightfield, f.hoechst, f.draq7, params, backend=be)
        segment_frame(f.brightfield, empty, empty, params, backend=be)


def test_cpu_fallbacks_transfer_only_what_they_need(be, monkeypatch):
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, seed=5)
    sizes, fills = [], []
    for name in ("to_host", "to_device"):
        move = getattr(be, name)
        monkeypatch.setattr(be, name, lambda a, move=move: sizes.append(np.size(a)) or move(a))
    fill = be._cpu.fill_holes
    monkeypatch.setattr(be._cpu, "fill_holes", lambda m: fills.append(1) or fill(m))
    segment_frame(f.brightfield, f.hoechst, f.draq7, backend=be)
    frames = [s for s in sizes if s == 128 * 128]
    # Images: 3 channels in; each hole filling a mask out and back; the watershed's
    # landscape and markers out and its labels back; 3 result images out. Nothing else.
    assert len(frames) == 3 + 2 * len(fills) + 3 + 3
    # The rest are the per-nucleus dead flags and a few numbers read back (peaks, order
    # statistics, counts, the nuclei's means for the bleed estimate, the local Draq7
    # background's block medians and counts back and its smoothed mesh out, whether the
    # split left a piece to merge and how many labels it kept, whether an object is large
    # enough for the notch cut and, if so, its pixels' places and labels out and their labels
    # back, the grey levels of the brightfield and Hoechst samples, the brightfield edge lines'
    # 12 medians for the blend of a sub-pixel registration): 43 with the defaults, each a sync
    # of tens of microseconds.
    assert len(sizes) - len(frames) <= 43


def test_gpu_without_cupy_is_a_clear_error():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"needs CuPy .*cupy-cuda12x cucim-cu12.*-e '\.\[gpu-cu12\]'"):
            get_backend("gpu")
    else:
        pytest.skip("CuPy is installed")


def test_backend_names():
    assert get_backend("cpu").name == "cpu"
    assert get_backend("auto").name in ("cpu", "gpu")
    for bad in ("GPU", "gpu:x", "gpu:²", "gpu:", "cuda"):
        with pytest.raises(ValueError, match="backend must be"):
            get_backend(bad)
    for bad in (3, None, ["cpu"]):   # a wrong type: TypeError, as the package's input policy has it
        with pytest.raises(TypeError, match="backend must be .*got (int|NoneType|list)"):
            get_backend(bad)


def test_voronoi_identical_and_close_to_watershed(be):
    f = synthetic.make_frame(shape=(256, 256), n_cells=22, dead_fraction=0.4, bit_depth=12, seed=7)
    p = SegmentParams(separation="voronoi")
    got = segment_frame(f.brightfield, f.hoechst, f.draq7, p, backend=be)
    ref = segment_frame(f.brightfield, f.hoechst, f.draq7, p, backend="cpu")
    assert (got.classes == ref.classes).mean() >= 0.999
    shed = segment_frame(f.brightfield, f.hoechst, f.draq7, backend="cpu")
    both = (got.cells > 0) & (shed.cells > 0)
    assert (got.cells[both] == shed.cells[both]).mean() >= 0.95  # 0.999 measured
    assert both.sum() >= 0.95 * (shed.cells > 0).sum()


def test_voronoi_moves_no_array_to_the_host():
    be = standin()
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, seed=5)
    d = {k: be.to_device(v) for k, v in (("bf", f.brightfield), ("ho", f.hoechst), ("d7", f.draq7))}
    area = stages.cell_area(d["bf"], SegmentParams(), be)
    nuc = stages.nuclei(stages.nucleus_mask(d["ho"], None, be)[0], stages.nucleus_mask(d["d7"], None, be)[0], be)
    before = be.transfers
    stages.separate_cells(area.mask, nuc.labels, be, "voronoi")
    # Only the "did anything grow?" bools: one per 8 growth steps, a handful here.
    assert be.transfers - before <= 6


class OutOfMemoryError(MemoryError):
    """Named as cupy.cuda.memory.OutOfMemoryError."""


def test_out_of_memory_redoes_the_frame_on_the_cpu():
    class Full(ArrayBackend):
        def distance_to(self, mask):
            raise OutOfMemoryError("out of memory allocating 4,194,304 bytes")

    be = Full(np, scipy.ndimage, skimage, name="gpu")
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, seed=6)
    with pytest.warns(RuntimeWarning, match=r"gpu ran out of memory on a \(128, 128\) frame"):
        got = segment_frame(f.brightfield, f.hoechst, f.draq7, backend=be)
    ref = segment_frame(f.brightfield, f.hoechst, f.draq7, backend="cpu")
    assert got.backend == "cpu"
    assert (got.classes == ref.classes).all()


@pytest.mark.parametrize("error", [
    OutOfMemoryError("out of memory allocating 4,194,304 bytes"),
    # an allocation inside a Thrust sort: CuPy's callback cannot pass its exception on
    RuntimeError("radix_sort: failed on 2nd step: cudaErrorMemoryAllocation: out of memory"),
])
def test_what_counts_as_the_gpu_running_out_of_memory(error):
    be = ArrayBackend(np, scipy.ndimage, skimage, name="gpu")
    assert be.is_out_of_memory(error)
    assert not be.is_out_of_memory(RuntimeError("an illegal memory access was encountered"))
    assert not be.is_out_of_memory(ValueError("hoechst has 3 dimensions"))
    assert not cpu.is_out_of_memory(error)


def test_other_errors_are_not_swallowed():
    class Broken(ArrayBackend):
        def distance_to(self, mask):
            raise ZeroDivisionError("a bug")

    f = synthetic.make_frame(shape=(96, 96), n_cells=3, seed=6)
    with pytest.raises(ZeroDivisionError):
        segment_frame(f.brightfield, f.hoechst, f.draq7, backend=Broken(np, scipy.ndimage, skimage))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int64])
def test_order_statistics_are_exact_ranks(be, dtype):
    """Rank floor(f * (n - 1)) of the sorted values, several from one partition, on every backend."""
    rng = np.random.default_rng(3)
    values = rng.integers(0, 500, (37, 29)).astype(dtype)  # ties included
    fractions = (0.0, 0.25, 0.5, 0.9, 1.0)
    expected = [np.sort(values.ravel())[int(f * (values.size - 1))] for f in fractions]
    assert be.order_statistics(be.to_device(values), fractions) == expected
    assert [be.order_statistic(be.to_device(values), f) for f in fractions] == expected
    assert cpu.order_statistics(values, fractions) == expected


class ImplicitTransfer(AssertionError):
    """A stand-in device array was read on the host without `Backend.to_host`."""


class Strict(np.ndarray):
    """A NumPy array standing in for a device array: reading it on the host raises.

    ``bool()``, ``int()``, ``float()``, ``.item()`` or ``.tolist()`` of a CuPy array
    each copy it to the host and wait for the device (an implicit sync); the stages
    must say so with ``be.to_host``. Reductions stay 0-d arrays, as on CuPy.
    """

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return super().__array_wrap__(array, context, False)

    def _refuse(self, *args, **kwargs):
        raise ImplicitTransfer("a device array read on the host without Backend.to_host")

    __bool__ = __int__ = __float__ = __index__ = item = tolist = _refuse


def _strict(value):
    if isinstance(value, np.ndarray):
        return value.view(Strict)
    if isinstance(value, tuple):
        return tuple(_strict(v) for v in value)
    return value


class StrictModule(Spy):
    """A module proxy whose functions return `Strict` arrays (cupyx/cuCIM return device arrays)."""

    def __getattr__(self, name):
        attr = super().__getattr__(name)
        if isinstance(attr, Spy):
            return StrictModule(attr._module, attr.called, attr._prefix)
        if callable(attr) and not isinstance(attr, type):
            return lambda *args, **kwargs: _strict(attr(*args, **kwargs))
        return attr


class StrictBackend(ArrayBackend):
    def to_device(self, array):
        return super().to_device(array).view(Strict)

    def to_host(self, array):
        return np.asarray(super().to_host(array)).view(np.ndarray)


def strict():
    return StrictBackend(np, StrictModule(scipy.ndimage), StrictModule(skimage), name="strict")


@pytest.mark.parametrize("params", [
    SegmentParams(), SegmentParams.from_preset("article"), SegmentParams(dead_call="touch"),
    SegmentParams(separation="voronoi"), SegmentParams(cell_threshold="block-max", nucleus_threshold=300),
    SegmentParams(draq7_dark=5.0), SegmentParams(draq7_dark=5.0, draq7_background="field"),
    SegmentParams(draq7_dark=5.0, split_nuclei=False),
], ids=["default", "article", "touch", "voronoi", "block-max", "dark", "dark-field", "dark-masks"])
def test_no_implicit_transfers(params):
    # Every host read of a device array goes through Backend.to_host (explicit, counted, commented).
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, dead_fraction=0.5, seed=8)
    empty = np.zeros_like(f.draq7)
    for channels in ((f.brightfield, f.hoechst, f.draq7), (f.brightfield, empty, empty)):
        got = segment_frame(*channels, params, backend=strict())
        ref = segment_frame(*channels, params, backend=standin())
        assert (got.classes == ref.classes).all()


def test_notch_cut_without_implicit_transfers():
    # two nuclei pressed flat together: one hill, cut at the notches on the host, explicitly
    from livedead_gpu.stages import split_nuclei

    yy, xx = np.mgrid[:100, :120]
    mask = (((yy - 50) / 24) ** 2 + ((xx - 40) / 12) ** 2 <= 1) | (((yy - 50) / 24) ** 2 + ((xx - 58) / 12) ** 2 <= 1)
    be = strict()
    labels, n = split_nuclei(be.to_device(mask), 30.0, SegmentParams(), be)
    ref, m = split_nuclei(mask, 30.0, SegmentParams(), standin())
    assert n == m == 2 and (be.to_host(labels) == ref).all()


def test_padding_fill_without_implicit_transfers():
    # a registered frame's zero corners: found, filled and set aside on the device
    from livedead_gpu.stages import cell_area

    f = synthetic.make_frame(shape=(128, 128), n_cells=8, seed=8)
    bf = f.brightfield.copy()
    bf[np.add.outer(np.arange(128), np.arange(128)) < 40] = 0   # a triangle, as a rotation leaves
    be = strict()
    got = be.to_host(cell_area(be.to_device(bf), backend=be).mask)
    ref = cell_area(bf, backend=standin()).mask
    assert (got == ref).all() and not got[:20, :20].any()


@pytest.mark.parametrize("params", [SegmentParams(), SegmentParams(nucleus_smoothing=1.0)], ids=["default", "smoothed"])
def test_nuclei_beside_padding_without_implicit_transfers(params):
    # A rotated frame's zero corners (every channel), and a shift's zero margin: the nucleus stage
    # finds the padding and reads past it on the device; the mosaic's tiles as the frame.
    import cv2

    f = synthetic.make_frame(shape=(256, 256), n_cells=16, dead_fraction=0.4, seed=8)
    m = cv2.getRotationMatrix2D((127.5, 127.5), 7, 1.0)
    channels = [cv2.warpAffine(a, m, (256, 256), flags=cv2.INTER_LINEAR)
                for a in (f.brightfield, (f.hoechst + 500).astype(np.uint16), f.draq7)]
    shifted = [np.zeros_like(a) for a in channels]
    for out, a in zip(shifted, channels):
        out[:, 20:] = a[:, :-20]
    for frame in (channels, shifted):
        got = segment_frame(*frame, params, backend=strict())
        ref = segment_frame(*frame, params, backend=standin())
        assert (got.classes == ref.classes).all() and got.n_dead > 0
    tiles = segment_mosaic(*channels, params, tile=128, max_cell_diameter=32, backend=strict(), scheduler="sync")
    assert (tiles.classes.compute(scheduler="sync") == segment_frame(*channels, params, backend=standin()).classes).all()


def test_auto_smoothing_decides_alike_without_implicit_transfers():
    # "auto" on a dim field (smoothed) and on a sparse one (its one bright object keeps it
    # unsmoothed): the array backends decide as the CPU one, every host read explicit. The
    # unsmoothed mask "auto" sets aside says nothing (its noise specks had made the size
    # filter warn).
    f = synthetic.make_frame(shape=(256, 256), n_cells=20, dead_fraction=0.3, seed=1)
    rng = np.random.default_rng(100)
    dim = np.clip(np.rint(0.04 * f.hoechst + rng.normal(0, 12, f.hoechst.shape)) + 40, 0, 4095).astype(np.uint16)
    sparse = synthetic.make_frame(shape=(256, 256), n_cells=1, seed=0)
    with pytest.warns(UserWarning) as said:
        segment_frame(f.brightfield, dim, f.draq7, SegmentParams(nucleus_smoothing=0.0))
    assert {str(w.message)[:25] for w in said} == {"min_nucleus_area = 20 px ", "Hoechst nuclei stand unde"}
    for channels, sigma in (((f.brightfield, dim, f.draq7), 1.0),
                            ((sparse.brightfield, sparse.hoechst, sparse.draq7), 0.0)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ref = segment_frame(*channels)
        assert ref.thresholds["hoechst_smoothing"] == sigma
        for be in (strict(), standin()):
            got = segment_frame(*channels, backend=be)
            assert got.thresholds["hoechst_smoothing"] == sigma
            assert (got.classes == ref.classes).mean() >= 0.999


def test_no_implicit_transfers_in_mosaic_tiles():
    f = synthetic.make_frame(shape=(512, 512), n_cells=80, dead_fraction=0.4, seed=9)
    for params in (SegmentParams(), SegmentParams(nucleus_threshold="block-max", dead_call="touch")):
        m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, params, tile=256, backend=strict(), scheduler="sync")
        ref = segment_mosaic(f.brightfield, f.hoechst, f.draq7, params, tile=256, backend=standin(), scheduler="sync")
        assert (m.classes.compute(scheduler="sync") == ref.classes.compute(scheduler="sync")).all()


def test_no_implicit_transfers_when_evaluating():
    # evaluate's nucleus stage of one stain, and of two (live/dead), beside a registration's zero margin
    from livedead_gpu.evaluate import segment_live_dead, segment_nuclei

    f = synthetic.make_frame(shape=(160, 160), n_cells=10, dead_fraction=0.4, seed=3)
    ho, d7 = f.hoechst.copy(), f.draq7.copy()
    ho[:, :12] = d7[:, :12] = 0
    for hoechst, draq7 in ((f.hoechst, f.draq7), (ho, d7)):
        assert (segment_nuclei(hoechst, backend=strict()) == segment_nuclei(hoechst, backend=standin())).all()
        (got, dead), (ref, ref_dead) = (segment_live_dead(hoechst, draq7, backend=be) for be in (strict(), standin()))
        assert (got == ref).all() and (dead == ref_dead).all() and ref_dead.any()


def test_no_implicit_transfers_when_pieces_merge():
    # The merge of a split's small pieces (which the frames above may not reach).
    labels = np.zeros((20, 30), np.int32)
    labels[2:12, 2:12], labels[2:12, 12:14], labels[14:18, 2:6] = 1, 2, 3
    fixed = np.zeros(4, bool)
    be = strict()
    got, n = stages.merge_pieces(be.to_device(labels.copy()), 3, 25, be, be.to_device(fixed))
    ref, m = stages.merge_pieces(labels.copy(), 3, 25, standin())
    assert n == m == 2 and (be.to_host(got) == ref).all() and (ref[2:12, 12:14] == 1).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_no_implicit_transfers_on_degenerate_frames(dtype):
    # The fallback branches (no edge, no background sample, no nucleus) read nothing back implicitly either.
    rng = np.random.default_rng(1)
    shape = (48, 64)
    frames = {
        "zeros": np.zeros(shape, dtype),
        "saturated": np.full(shape, np.iinfo(dtype).max, dtype),
        "noise": rng.integers(0, np.iinfo(dtype).max, shape).astype(dtype),
        "faint": rng.integers(0, 3, shape).astype(dtype),
    }
    for bf, ho, d7 in [("noise", "zeros", "zeros"), ("zeros", "saturated", "saturated"), ("faint", "noise", "noise"),
                       ("saturated", "faint", "saturated"), ("noise", "noise", "faint")]:
        for params in (SegmentParams(), SegmentParams(separation="voronoi", dead_call="touch")):
            got = segment_frame(frames[bf], frames[ho], frames[d7], params, backend=strict())
            ref = segment_frame(frames[bf], frames[ho], frames[d7], params, backend=standin())
            assert (got.classes == ref.classes).all(), (bf, ho, d7)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("size", [3, 9, 201])
def test_box_mean_of_integers_is_exact(be, dtype, size):
    # Exact window sums: OpenCV's integer running sums and the array backends' summed-area
    # table agree bit for bit, and a crop holding the windows gives the same values.
    rng = np.random.default_rng(size)
    image = rng.integers(0, np.iinfo(dtype).max, (230, 260)).astype(dtype)
    got = host(be, be.box_mean(be.to_device(image), size))
    ref = cpu.box_mean(image, size)
    assert got.dtype == ref.dtype == np.float32
    assert (got == ref).all()
    exact = scipy.ndimage.uniform_filter(image.astype(np.float64), size, mode="nearest")
    np.testing.assert_allclose(ref, exact, rtol=1e-6)
    r = size // 2
    crop = (slice(5, 5 + 2 * r + 20), slice(7, 7 + 2 * r + 30))
    inner = cpu.box_mean(image[crop], size)[r:-r, r:-r]
    assert (inner == ref[crop][r:-r, r:-r]).all()


@pytest.mark.parametrize("factor", [1, 32, 64])
def test_upsample_close(be, factor):
    # Bilinear between pixel centres, edges held: ndimage.zoom(grid_mode=True) against cv2.resize.
    grid = np.random.default_rng(factor).uniform(1, 5000, (3, 5)).astype(np.float32)
    got = host(be, be.upsample(be.to_device(grid), factor))
    ref = cpu.upsample(grid, factor)
    assert got.shape == ref.shape == (3 * factor, 5 * factor) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # Past the outer centres the edge value holds; between them a ramp stays a ramp.
    assert ref[0, 0] == grid[0, 0] and ref[-1, -1] == grid[-1, -1]
    ramp = cpu.upsample(np.array([[10, 20, 40]], np.float32), factor)[0]
    x = np.arange(3 * factor)
    position = np.clip((x + 0.5) / factor - 0.5, 0, 2)  # in grid columns
    np.testing.assert_allclose(ramp, np.interp(position, [0, 1, 2], [10, 20, 40]), rtol=1e-6)


def test_together_runs_side_by_side_on_opencv_threads():
    import threading

    import cv2

    def boom():
        raise ZeroDivisionError("in the second call")

    old = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        here = threading.get_ident()
        ids = cpu.together(threading.get_ident, threading.get_ident)
        assert ids[0] == here and ids[1] != here  # the first in this thread, the other beside it
        assert cpu.together(lambda: 1, lambda: "two", lambda: [3]) == [1, "two", [3]]
        with pytest.raises(ZeroDivisionError, match="second call"):
            cpu.together(lambda: 1, boom)
        # The caller keeps the other core busy itself (the export's writer): in turn.
        assert CpuBackend(overlap=False).together(threading.get_ident, threading.get_ident) == [here, here]
        cv2.setNumThreads(1)  # a Dask worker's share: in turn, in this thread
        assert cpu.together(threading.get_ident, threading.get_ident) == [here, here]
    finally:
        cv2.setNumThreads(old)
    assert standin().together(lambda: 1, lambda: 2) == [1, 2]


def test_auto_without_cucim_is_the_cpu(monkeypatch, caplog):
    # A device and CuPy but no cuCIM: "auto" had raised cupy_backend's RuntimeError.
    from livedead_gpu import backends
    from livedead_gpu.backends import gpu

    def no_cucim(device=None):
        raise RuntimeError("backend='gpu' needs cuCIM (cucim is missing)")

    monkeypatch.setattr(backends, "_gpu_available", lambda: True)
    monkeypatch.setattr(gpu, "cupy_backend", no_cucim)
    monkeypatch.setattr(backends, "_auto_logged", False)
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        assert isinstance(get_backend("auto"), CpuBackend)
        assert isinstance(get_backend("auto"), CpuBackend)   # a mosaic asks once a tile: said once
    assert caplog.text.count("needs cuCIM") == 1 and "using the CPU backend" in caplog.text
    with pytest.raises(RuntimeError, match="needs cuCIM"):
        get_backend("gpu")

    def broken(device=None):   # a cuCIM whose CUDA libraries fail to load
        raise OSError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(gpu, "cupy_backend", broken)
    assert isinstance(get_backend("auto"), CpuBackend)
