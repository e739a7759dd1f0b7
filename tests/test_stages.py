"""Each stage's contract, on small hand-made images."""

import cv2
import numpy as np
import pytest

from livedead_gpu import SegmentParams, segment_frame, synthetic
from livedead_gpu.backends import CpuBackend
from livedead_gpu.stages import (
    cell_area,
    class_mask,
    gradient_scale,
    nuclei,
    nucleus_mask,
    quantize,
    separate_cells,
    sobel_magnitude,
)

be = CpuBackend()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_sobel_is_opencvs(dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, (37, 53)).astype(dtype)
    gx = cv2.Sobel(image, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_64F, 0, 1, ksize=3)
    magnitude = sobel_magnitude(image)
    assert magnitude.dtype == np.float32 and magnitude.shape == image.shape
    np.testing.assert_allclose(magnitude, np.hypot(gx, gy), rtol=1e-6)


def test_gradient_saturates_instead_of_wrapping():
    image = np.zeros((16, 16), np.uint16)
    image[:, 8:] = 65535
    magnitude = sobel_magnitude(image)
    assert magnitude.max() == pytest.approx(4 * 65535)
    levels = quantize(magnitude, 1.0)
    assert levels.dtype == np.uint16
    assert levels.max() == 65535
    assert (levels[magnitude > 65535] == 65535).all()
    assert quantize(np.array([[0.5, 2.99, 7.0]], np.float32), 2.0).tolist() == [[0, 1, 3]]


def test_gradient_scale():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 50, (64, 64)).astype(np.float32)  # 8-bit-like gradients
    assert gradient_scale(small, 16, 1024) == 1.0
    big = small * 1000
    scale = gradient_scale(big, 16, 1024)
    maxima = be.block_max(big, 16)
    assert scale == pytest.approx(np.sort(maxima.ravel())[int(0.99 * (maxima.size - 1))] / 1024)
    assert gradient_scale(big, 16, None) == 1.0


def ring(shape, centre, radius, width=2):
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre[::-1], radius, 1, width)
    return mask.astype(bool)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_cell_area_fills_holes_of_a_cell_covering_the_corner(dtype):
    # A textured cell over pixel (0, 0) with a smooth hole inside, and one in the middle.
    shape = (96, 96)
    rng = np.random.default_rng(3)
    image = rng.integers(100, 103, shape).astype(dtype)
    for centre, radius in (((10, 10), 28), ((65, 65), 18)):
        body = ring(shape, centre, radius, -1) & ~ring(shape, (centre[0] + 5, centre[1] + 5), 7, -1)
        image[body] = rng.integers(60, 250, body.sum()).astype(dtype)
    area = cell_area(image, SegmentParams(coarseness=8, gradient_levels=None))
    assert area.mask.dtype == bool
    assert area.mask[15, 15] and area.mask[70, 70], "holes not filled"
    assert not area.mask[50, 5] and not area.mask[90, 90], "background filled"
    # The article floods from (0, 0), inside the corner cell, and fills the background instead.
    import article

    assert article.article_cell_area(image, 1.2, 8)[90, 90]


def test_cell_area_morphology_is_opencvs():
    rng = np.random.default_rng(4)
    image = (rng.random((64, 80)) < 0.02).astype(np.uint8) * 200 + 10
    p = SegmentParams(coarseness=8, gradient_levels=None, kernel_size=5)
    area = cell_area(image, p)
    levels = quantize(sobel_magnitude(image))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    expected = cv2.dilate((levels > area.threshold).astype(np.uint8), kernel, iterations=2)
    expected = cv2.erode(expected, kernel, iterations=2).astype(bool)
    assert (area.mask >= expected).all()  # hole filling only adds
    assert (area.mask[expected == area.mask]).size > 0


def test_fill_holes_is_border_connectivity():
    mask = np.zeros((30, 30), bool)
    mask[0:10, 0:10] = True
    mask[3:6, 3:6] = False  # a hole in a block touching the corner
    mask[15:25, 15:25] = True
    mask[18:20, 18:20] = False
    mask[20:30, 5:8] = True  # a notch open to the border is no hole
    mask[25:30, 6] = False
    filled = be.fill_holes(mask)
    assert filled[4, 4] and filled[19, 19]
    assert not filled[29, 6]
    assert (filled >= mask).all()


def _blob(shape, centre, peak, sigma):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return peak * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


def test_cut_edges_gives_each_nucleus_its_own_half_height_edge():
    from livedead_gpu.stages.nuclei import cut_edges

    # Two blurred nuclei of one size, one 10x brighter: a threshold low enough for the dim
    # one leaves the bright one a wide skirt; each is cut at half its own local mean contrast.
    contrast = (_blob((64, 128), (32, 32), 1000.0, 6) + _blob((64, 128), (32, 96), 100.0, 6)).astype(np.float32)
    mask = contrast > 10
    cut = cut_edges(mask, contrast, 10.0, 0.5, 25)
    assert cut.dtype == bool and not (cut & ~mask).any()
    left, right = cut[:, :64].sum(), cut[:, 64:].sum()
    assert mask[:, :64].sum() > 2 * left              # the bright nucleus lost its skirt
    # thresholded, the bright nucleus is twice the dim one's area; cut, much closer to it
    assert left / right < 1.5 < mask[:, :64].sum() / mask[:, 64:].sum()
    # the level is local: each nucleus as if alone
    alone = cut_edges(mask[:, :64], contrast[:, :64], 10.0, 0.5, 25)
    assert (alone == cut[:, :64]).all()
    # never below the threshold; an empty mask stays empty; edge 0 keeps the mask
    assert not cut_edges(mask, contrast, 2000.0, 0.5, 25).any()
    assert not cut_edges(np.zeros_like(mask), contrast, 10.0, 0.5, 25).any()
    assert (cut_edges(mask, contrast, 10.0, 0.0, 25) == mask).all()
    # arrays in Fortran order (a transposed image's): the same cut
    fortran = cut_edges(np.asfortranarray(mask), np.asfortranarray(contrast), 10.0, 0.5, 25)
    assert (fortran == cut).all()


def test_nucleus_edge_zero_keeps_the_thresholded_mask():
    from livedead_gpu.stages.nuclei import contrast_mask

    f = synthetic.make_frame(shape=(192, 192), n_cells=14, seed=3)
    plain, t0 = contrast_mask(f.hoechst, SegmentParams(nucleus_edge=0))
    cut, t1 = contrast_mask(f.hoechst, SegmentParams())
    assert t0 == t1 and not (cut & ~plain).any() and cut.sum() < plain.sum()


def test_nucleus_mask_drops_small_objects_and_uses_a_fixed_threshold():
    image = np.zeros((64, 64), np.uint16)
    cv2.circle(image, (20, 20), 6, 1000, -1)
    image[50, 50] = 1000
    image[50:53, 10:13] = 1000
    p = SegmentParams(nucleus_threshold=500, min_nucleus_area=20)
    mask, threshold = nucleus_mask(image, p)
    assert threshold == 500
    assert mask[20, 20] and not mask[50, 50] and not mask[51, 11]
    mask, _ = nucleus_mask(image, SegmentParams(nucleus_threshold=500, min_nucleus_area=0))
    assert mask[50, 50] and mask[51, 11]


def test_nuclei_dead_when_touching_draq7():
    hoechst = np.zeros((40, 40), bool)
    hoechst[5:10, 5:10] = hoechst[20:25, 20:25] = True
    draq7 = np.zeros((40, 40), bool)
    draq7[22:24, 22:24] = True
    draq7[30:35, 5:10] = True  # Draq7 without Hoechst: a dead nucleus too
    nuc = nuclei(hoechst, draq7)
    assert nuc.n == 3
    assert nuc.dead.tolist() == [False, False, True, True]
    assert nuc.labels.dtype == np.int32


def two_touching_cells():
    area = np.zeros((40, 60), bool)
    area[5:35, 3:57] = True
    labels = np.zeros((40, 60), np.int32)
    labels[17:23, 12:18] = 1
    labels[17:23, 42:48] = 2
    return area, labels


def test_separation_keeps_nucleus_one_and_splits_touching_cells():
    area, labels = two_touching_cells()
    cells, outlines = separate_cells(area, labels)
    assert set(np.unique(cells)) == {0, 1, 2}, "nucleus 1 merged into the background"
    assert (cells[labels == 1] == 1).all() and (cells[labels == 2] == 2).all()
    # The line between the cells runs down the middle.
    assert outlines[5:35, 26:34].any(axis=1).all()
    assert not (cells[~area] > 0).any()


def test_separation_of_a_cell_area_with_no_nucleus_on_an_edt_of_nan():
    # cupyx's distance_transform_edt of an input with no zero is NaN (SciPy's is large): a NaN
    # cast to the 8-bit landscape is undefined (NumPy warns). No cell, no warning.
    import warnings

    import scipy.ndimage
    import skimage

    from livedead_gpu.backends.gpu import ArrayBackend

    class NanEdt:
        def __getattr__(self, name):
            return getattr(scipy.ndimage, name)

        @staticmethod
        def distance_transform_edt(image, **kwargs):
            out = scipy.ndimage.distance_transform_edt(image, **kwargs)
            return np.full(image.shape, np.nan) if image.all() else out

    area = np.zeros((40, 60), bool)
    area[5:35, 10:50] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cells, outlines = separate_cells(area, np.zeros(area.shape, np.int32),
                                         backend=ArrayBackend(np, NanEdt(), skimage, name="nan-edt"))
    assert not cells.any() and not outlines[~area].any()


def test_separation_draws_no_outline_on_the_frame():
    area = np.ones((40, 60), bool)  # cells fill the frame
    _, labels = two_touching_cells()
    cells, outlines = separate_cells(area, labels)
    frame = np.ones_like(outlines)
    frame[1:-1, 1:-1] = False
    # Only where the two cells meet does a line reach the frame.
    assert (cells[frame] > 0).mean() > 0.95
    assert not (outlines & frame)[:, :25].any() and not (outlines & frame)[:, 35:].any()
    assert outlines.any()


def flood_case(shape, n_blobs, seed, levels=256):
    """Watershed inputs: round blobs to flood (0), most with a nucleus (2, 3, ...), on 1s."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    markers = np.ones(shape, np.int32)
    for i in range(n_blobs):
        y, x, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(2, 9)
        blob = (yy - y) ** 2 + (xx - x) ** 2
        markers[blob <= r * r] = 0
        if rng.random() < 0.8:
            markers[blob <= r * r // 9] = i + 2
    # Random heights: every priority, or few of them and so many ties (FIFO order).
    return rng.integers(0, levels, shape, dtype=np.uint8), markers


def test_watershed_in_parts_is_the_single_call(monkeypatch):
    import livedead_gpu.backends.cpu as cpu

    calls = []
    flood = cpu._flood
    monkeypatch.setattr(cpu, "_flood", lambda *a, **k: calls.append(1) or flood(*a, **k))
    cases = [flood_case((96, 80), 12, seed, levels) for seed in range(6) for levels in (256, 3)]
    cases += [flood_case((101, 67), 20, 9), flood_case((7, 300), 10, 4)]
    corners = flood_case((64, 64), 8, 2)
    corners[1][[0, 0, -1, -1, 31], [0, -1, 0, -1, 0]] = 0  # blobs on the frame
    tall = flood_case((90, 90), 12, 3)
    tall[1][2:-2, 44:47] = 0  # a component spanning all the others' rows
    tall[1][40:50, 45] = 50
    boxes = flood_case((96, 96), 6, 5, 3)
    for top in (8, 40, 72):  # flat tops and bottoms on block rows: rings in the next block
        boxes[1][top : top + 16, top // 2 : top // 2 + 20] = 0
        boxes[1][top + 8, top // 2 + 10] = top
    cases += [corners, tall, boxes]
    empty = (np.zeros((64, 64), np.uint8), np.ones((64, 64), np.int32))
    confluent = flood_case((64, 64), 0, 0)
    confluent[1][3:-3, 3:-3] = 0
    confluent[1][[10, 50], [10, 50]] = [2, 3]
    for i, (landscape, markers) in enumerate(cases + [empty, confluent]):
        want = flood(landscape, markers)
        for parts in (2, 3, 5):
            for block in (4, 8):
                calls.clear()
                assert np.array_equal(cpu._watershed(landscape, markers, parts, block), want)
                # Split (more than one call) but for the last two; always with 4 x 4 blocks.
                assert len(calls) == 1 if i >= len(cases) else block == 8 or len(calls) > 1
    big = [np.tile(a, (8, 8)) for a in flood_case((128, 128), 20, 1)]  # split in the method too
    assert np.array_equal(be.watershed(*big), flood(*big))


@pytest.mark.parametrize("threads", [1, 2])
def test_gradient_in_bands_is_the_whole_image_call(monkeypatch, threads):
    import livedead_gpu.backends.cpu as cpu
    from livedead_gpu.backends.base import Backend

    rng = np.random.default_rng(threads)
    monkeypatch.setattr(cpu, "_BAND_MIN", 1)
    monkeypatch.setattr(cpu, "_BAND_PIXELS", 1)  # bands of 16 rows: many band edges
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        for shape in [(100, 67), (7, 300), (257, 40), (33, 33)]:
            for dtype, top in ((np.uint8, 256), (np.uint16, 65536), (np.float32, 4096)):
                image = rng.integers(0, top, shape).astype(dtype)
                # 1.0625 and 2.1: OpenCV's own kernel size would reach a row past int(4 sigma + 0.5)
                for sigma in (0.0, 0.5, 1.0, 1.0625, 2.1, 2.6):
                    assert np.array_equal(be.gradient(image, sigma), Backend.gradient(be, image, sigma)), (
                        shape, dtype, sigma)
    finally:
        cv2.setNumThreads(before)
    big = rng.integers(0, 4096, (1100, 1000)).astype(np.uint16)  # the default bands
    assert np.array_equal(be.gradient(big, 1.0), Backend.gradient(be, big, 1.0))


def _bands_in_child(queue):
    out = np.zeros((1100, 1000), np.uint8)

    def band(span):
        out[span] = 1

    be.by_rows(band, out.shape)
    queue.put(int(out.sum()))


def test_bands_in_a_forked_process():
    # The band pool is kept between calls; a forked process (a Dask worker) must get its
    # own, not wait forever on threads that did not survive the fork.
    import multiprocessing

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        be.by_rows(lambda span: None, (1100, 1000))  # the parent's pool exists
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_bands_in_child, args=(queue,))
        child.start()
        child.join(60)
        alive = child.is_alive()
        if alive:
            child.kill()
        assert not alive and child.exitcode == 0
        assert queue.get(timeout=5) == 1100 * 1000
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_separation_in_bands_is_the_whole_image_pass(monkeypatch, threads):
    import livedead_gpu.backends.cpu as cpu

    f = synthetic.make_frame((192, 160), n_cells=14, seed=4)
    r = segment_frame(f.brightfield, f.hoechst, f.draq7, intermediates=True)
    area = r.intermediates["cell_area"]
    want = separate_cells(area, r.nuclei)  # one band: under _BAND_MIN pixels
    monkeypatch.setattr(cpu, "_BAND_MIN", 1)
    monkeypatch.setattr(cpu, "_BAND_PIXELS", 1)  # bands of 16 rows
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        got = separate_cells(area, r.nuclei)
    finally:
        cv2.setNumThreads(before)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want))


def test_class_mask_precedence():
    cells = np.array([[1, 1, 1, 0, 2, 2]], np.int32)
    outlines = np.array([[0, 0, 1, 1, 0, 0]], bool)
    nucleus = np.array([[0, 1, 1, 0, 2, 2]], np.int32)
    dead = np.array([False, False, True])
    out = class_mask(cells, outlines, nucleus, dead)
    assert out.dtype == np.uint8
    assert out.tolist() == [[1, 3, 3, 2, 4, 4]]
    # arrays in Fortran order (a transposed frame's): the same mask
    cells2, outlines2, nucleus2 = (np.asfortranarray(np.vstack([a, a[:, ::-1]])) for a in (cells, outlines, nucleus))
    out2 = class_mask(cells2, outlines2, nucleus2, dead)
    assert out2.tolist() == [[1, 3, 3, 2, 4, 4], [4, 4, 2, 3, 3, 1]]


def test_voronoi_splits_touching_cells_without_frame_outline():
    area = np.ones((40, 60), bool)
    _, labels = two_touching_cells()
    cells, outlines = separate_cells(area, labels, method="voronoi")
    assert set(np.unique(cells)) == {0, 1, 2}
    assert (cells[labels == 1] == 1).all() and (cells[labels == 2] == 2).all()
    assert outlines[:, 26:34].any(axis=1).all()  # one line between the two
    assert outlines.sum() == 40  # ... one pixel wide, and nothing on the frame
    assert (cells[:, :25] == 1).all() and (cells[:, 35:] == 2).all()


def test_voronoi_grows_inside_the_area_only():
    area = np.zeros((30, 60), bool)
    area[5:25, 5:25] = area[5:25, 35:55] = True  # two separate blobs
    labels = np.zeros((30, 60), np.int32)
    labels[14:16, 14:16] = 1  # the right blob has no nucleus
    cells, outlines = separate_cells(area, labels, method="voronoi")
    assert (cells[:, 30:] == 0).all() and not outlines[:, 30:].any()
    assert (cells[6:24, 6:24] == 1).all()  # the blob's inside; its rim is outline
    assert outlines[5, 10] and not outlines[4, 10]


def test_voronoi_draws_no_outline_on_a_nucleus():
    # A nucleus on the edge of the cell area had its edge pixels taken as outline, so cells
    # was 0 there, and a 1-px nucleus had no cell at all (cell i holds nucleus i)
    from livedead_gpu.stages import separate_cells

    f = synthetic.make_frame((128, 128), n_cells=12, seed=1)
    r = segment_frame(f.brightfield, f.hoechst, f.draq7, SegmentParams.from_preset("article", separation="voronoi"))
    on = r.nuclei > 0
    assert (r.cells[on] == r.nuclei[on]).all()
    labels = np.zeros((9, 9), np.int32)
    labels[4, 4] = 1
    cells, outlines = separate_cells(np.zeros((9, 9), bool), labels, method="voronoi")
    assert cells[4, 4] == 1 and not outlines[4, 4]


@pytest.mark.parametrize("backend", ["cpu", "base"])
def test_grow_labels_reaches_a_pixel_only_a_diagonal_step_reaches(backend):
    # The growth stopped at the first cross step that assigned nothing, before the next square
    # step reached a pixel diagonally; another object growing elsewhere kept it going, so a
    # mosaic's tile and the whole frame labelled that pixel differently.
    from livedead_gpu.backends.base import Backend

    labels = np.zeros((4, 5), np.int32)
    labels[0, 0] = 1
    region = np.zeros((4, 5), bool)
    region[0, 0] = region[0, 1] = region[1, 2] = True
    grow = be.grow_labels if backend == "cpu" else lambda *a, **k: Backend.grow_labels(be, *a, **k)
    for check_every in (1, 2, 8):
        assert grow(labels, region, check_every=check_every)[1, 2] == 1


def test_unknown_separation_method():
    area, labels = two_touching_cells()
    with pytest.raises(ValueError, match="method must be 'watershed' or 'voronoi'"):
        separate_cells(area, labels, method="flood")


def test_draq7_background_outside_off_the_sampling_grid():
    # Nuclei everywhere but a 5x5 hole: grown by 2 px they leave one pixel, (13, 13),
    # which the every-other-pixel sample misses. The median is then that pixel's; with
    # nuclei wall to wall, that of every other pixel.
    from livedead_gpu.stages.nuclei import draq7_background

    mask = np.ones((32, 32), bool)
    mask[11:16, 11:16] = False
    draq7 = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    assert draq7_background(draq7, mask) == draq7[13, 13]
    grid = np.sort(draq7[::2, ::2].ravel())
    assert draq7_background(draq7, np.ones_like(mask)) == grid[(grid.size - 1) // 2]
