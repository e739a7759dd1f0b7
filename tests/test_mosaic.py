"""Mosaics in tiles: the global thresholds exactly, the class masks as whole-image processing."""

import dataclasses
import warnings

import dask.array as da
import numpy as np
import pytest

from livedead_gpu import SegmentParams, segment_frame, synthetic
from livedead_gpu.backends import get_backend
from livedead_gpu.mosaic import overlap_depth, segment_mosaic, tile_chunks
from livedead_gpu.stages.nuclei import _contrast

pytestmark = pytest.mark.filterwarnings("ignore:placed .* cells:UserWarning")


@pytest.fixture(scope="module")
def frames():
    return {size: synthetic.make_frame((size, size), n_cells=int(300 * (size / 1024) ** 2), seed=1)
            for size in (1000, 1024)}


def check(frame, params, tile, whole_params=None, **kw):
    whole = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, whole_params or params)
    m = segment_mosaic(frame.brightfield, frame.hoechst, frame.draq7, params, tile=tile, scheduler="sync", **kw)
    assert isinstance(m.classes, da.Array) and len(m.classes.chunks[0]) > 1
    assert m.thresholds == whole.thresholds            # exactly, every one
    classes = m.classes.compute(scheduler="sync")
    assert classes.dtype == np.uint8
    assert (classes == whole.classes).mean() >= 0.999
    # the cells: one mosaic label per whole-image cell and back
    cells = m.cells.compute(scheduler="sync")
    fg = (cells > 0) | (whole.cells > 0)
    pairs = np.unique(np.stack([cells[fg], whole.cells[fg]]), axis=1)
    assert pairs.shape[1] == len(np.unique(whole.cells[whole.cells > 0])) + (pairs.min(axis=0) == 0).sum()
    assert m.counts(scheduler="sync") == (whole.n_live, whole.n_dead)
    return m, classes, whole


@pytest.mark.parametrize("dead_call, bleed", [("ratio", "auto"), ("ratio", 0.0), ("touch", "auto")])
def test_tiled_mosaic_matches_whole_image(frames, dead_call, bleed):
    params = SegmentParams(nucleus_threshold="block-max", dead_call=dead_call, bleed=bleed)
    _, _, whole = check(frames[1024], params, 256)
    assert whole.n_live > 100 and whole.n_dead > 30


def test_draq7_dark_in_tiles_matches_whole_image(frames):
    # a camera offset on every channel, given as draq7_dark
    f = frames[1024]
    shifted = dataclasses.replace(f, **{c: np.clip(getattr(f, c).astype(np.int64) + 800, 0, 4095).astype(np.uint16)
                                        for c in ("brightfield", "hoechst", "draq7")})
    _, _, whole = check(shifted, SegmentParams(draq7_dark=800), 256)
    assert (whole.n_live, whole.n_dead) == (f.n_live, f.n_dead)


def test_alignment_padding_in_tiles_matches_whole_image(frames):
    # margins of 0 in every channel, set aside by both; cell labels stay the whole mosaic's raster index
    f = frames[1024]
    padded = {}
    for c in ("brightfield", "hoechst", "draq7"):
        a = getattr(f, c).copy()
        a[:70], a[:, -200:] = 0, 0
        padded[c] = a
    m, classes, whole = check(dataclasses.replace(f, **padded), SegmentParams(), 256)
    assert not classes[:70].any() and not classes[:, -200:].any()
    cells = m.cells.compute(scheduler="sync")
    ids = np.unique(cells[cells > 0])
    assert len(ids) and (cells.ravel()[ids - 1] == ids).all()   # 1 + the raster index of a pixel of the cell


def test_uneven_mosaic_and_the_block_max_cell_threshold(frames):
    # 1000 px in 128-px tiles: a 104-px remainder (under the halo) joins the last tile
    params = SegmentParams(nucleus_threshold="block-max", dead_call="touch", cell_threshold="block-max")
    check(frames[1000], params, 128)
    check(frames[1000], SegmentParams(nucleus_threshold=300, dead_call="touch"), 128)


def test_local_draq7_background_in_tiles_matches_whole_image(frames):
    # A glow over one corner makes the mesh uneven; 160-px tiles cut its 64-px blocks, whose
    # samples then come from two or four tiles.
    f = frames[1000]
    yy, xx = np.mgrid[:1000, :1000]
    glow = 300 * np.exp(-(yy**2 + xx**2) / (2 * 200.0**2))
    d7 = np.clip(f.draq7 + glow, 0, 4095).astype(np.uint16)
    frame = dataclasses.replace(f, draq7=d7)
    params = SegmentParams(nucleus_threshold="block-max")
    _, _, whole = check(frame, params, 160)
    assert whole.n_dead > 30


@pytest.mark.parametrize("nucleus_threshold", ["contrast", "block-max"])
def test_smoothed_nuclear_stains_in_tiles_match_whole_image(frames, nucleus_threshold):
    # nucleus_smoothing: the tiles' statistics and masks read the smoothed stains, with its halo.
    params = SegmentParams(nucleus_threshold=nucleus_threshold, nucleus_smoothing=1.5)
    _, _, whole = check(frames[1000], params, 176)
    assert whole.n_live > 100


def test_sparser_samples_of_large_mosaics_match_whole_image():
    # From 2048² the contrast statistics take every 8th pixel and the field backgrounds every
    # 4th: the tiles' samples must sit on the whole image's grid.
    from livedead_gpu.stages.nuclei import background_step, contrast_step

    f = synthetic.make_frame((2048, 2048), n_cells=300, seed=4)
    assert (contrast_step(f.hoechst.shape), background_step(f.hoechst.shape)) == (8, 4)
    _, _, whole = check(f, SegmentParams(), 1024)
    assert whole.n_live > 150 and whole.n_dead > 50


def test_default_params_match_whole_image():
    # The defaults: "contrast" nucleus threshold, split nuclei, Draq7-bright seeds, ratio call.
    f = synthetic.make_frame((1536, 1536), n_cells=675, seed=2)
    p = SegmentParams()
    m, classes, whole = check(f, p, 512)
    # the mosaic is within the 2048² crop: the diameter is segment_frame's own
    assert m.diameter == _contrast(f.hoechst, p, get_backend("cpu"))[2]
    assert m.thresholds["hoechst"] == whole.thresholds["hoechst"] and m.thresholds["draq7"] is None
    # bright nuclei: "auto" did not smooth, and the tiles' halo has no Gaussian's reach
    assert m.thresholds["hoechst_smoothing"] == whole.thresholds["hoechst_smoothing"] == 0.0
    plain = SegmentParams(nucleus_smoothing=0.0)
    assert m.depth == overlap_depth(plain, 64, diameter=m.diameter) > overlap_depth(plain, 64)
    assert whole.n_live > 300 and whole.n_dead > 150


def test_diameter_measured_on_a_central_crop(frames):
    # A mosaic larger than the crop is segment_frame's with the crop's diameter and bleed-through.
    f = frames[1024]
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, tile=256, diameter_crop=512, scheduler="sync")
    centre = (slice(256, 768),) * 2
    assert m.diameter == _contrast(f.hoechst[centre], SegmentParams(), get_backend("cpu"))[2]
    assert m.thresholds["bleed"] != segment_frame(f.brightfield, f.hoechst, f.draq7).thresholds["bleed"]
    whole = SegmentParams(nucleus_diameter_px=m.diameter, bleed=m.thresholds["bleed"])
    check(f, SegmentParams(), 256, whole_params=whole, diameter_crop=512)


def test_mosaic_from_a_dask_array_with_other_chunks(frames):
    f = frames[1024]
    params = SegmentParams(nucleus_threshold="block-max", dead_call="touch")
    lazy = [da.from_array(a, chunks=(300, 700)) for a in (f.brightfield, f.hoechst, f.draq7)]
    m = segment_mosaic(*lazy, params, tile=512, scheduler="sync")
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7, params)
    assert m.chunks == ((512, 512), (512, 512))
    assert m.thresholds == whole.thresholds
    assert (m.classes.compute(scheduler="sync") == whole.classes).mean() >= 0.999


def test_rotated_padding_in_tiles_matches_whole_image(frames):
    # a rigidly registered frame: its corners 0, not whole rows or columns, so no crop; the
    # padding's fill (a window 21 px wide) stays inside the halo
    import cv2

    from livedead_gpu.stages.gradient import padding_mask

    f = frames[1024]
    m = cv2.getRotationMatrix2D((511.5, 511.5), 7, 1.0)
    rotated = {c: cv2.warpAffine(getattr(f, c), m, (1024, 1024), flags=cv2.INTER_LINEAR)
               for c in ("brightfield", "hoechst", "draq7")}
    _, classes, whole = check(dataclasses.replace(f, **rotated), SegmentParams(), 256)
    # no cell area on the padding (nuclei cut by the image's edge reach the 2-px margin)
    assert whole.n_live > 100 and not np.isin(classes[padding_mask(rotated["brightfield"])], (1, 2)).any()


def test_a_sub_pixel_shifts_dim_edges_in_tiles_match_whole_image():
    # drift correction's fraction of a pixel: the mosaic marks the dimmed edge lines of its
    # whole brightfield (`stages.gradient.dim_edges`) and every tile's window takes them
    import cv2

    from livedead_gpu.stages.gradient import dim_edges

    f = synthetic.make_frame((640, 640), n_cells=120, dead_fraction=0.3, bit_depth=16, seed=2)
    m = np.float32([[1, 0, 0.3], [0, 1, 0.5]])   # the blend read from the edges sets the noise: thresholds equal
    shifted = {c: np.rint(cv2.warpAffine(getattr(f, c).astype(np.float32) + (3000 if c == "hoechst" else 0), m,
                                         (640, 640), flags=cv2.INTER_LINEAR)).astype(np.uint16)
               for c in ("brightfield", "hoechst", "draq7")}
    assert dim_edges(shifted["brightfield"])[0].all()
    _, _, whole = check(dataclasses.replace(f, **shifted), SegmentParams(), 224)
    assert (whole.n_live, whole.n_dead) == (f.n_live, f.n_dead)


@pytest.mark.parametrize("backend", ["cpu", "strict"])
def test_a_hole_wider_than_a_tile_is_filled_as_in_the_whole_frame(backend):
    # A cell-free gap ringed by cell area is a hole of the whole frame's cell area: filled. Each
    # tile sees the gap reach its window's edge; the tiles' background numbers joined across
    # the seams say it is no background open to the mosaic's edge (it had stayed background:
    # a third of the pixels differed).
    f = synthetic.make_frame((768, 768), n_cells=150, seed=1)
    empty = synthetic.make_frame((768, 768), n_cells=0, seed=1)
    gap = slice(134, 634)
    for name in ("brightfield", "hoechst", "draq7"):
        getattr(f, name)[gap, gap] = getattr(empty, name)[gap, gap]
    yy, xx = np.mgrid[:768, :768]
    ring = np.abs(np.stack([yy, xx]) - 383.5).max(axis=0)
    ring = (ring > 250) & (ring < 266)   # a 15-px band of strong texture: cell area
    bf = f.brightfield.astype(np.int64)
    bf[ring] += np.random.default_rng(2).integers(0, 2, ring.sum()) * (bf.max() // 4)
    f = dataclasses.replace(f, brightfield=bf.astype(f.brightfield.dtype))
    p = SegmentParams(nucleus_diameter_px=10)
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7, p)
    assert (whole.classes[gap, gap] > 0).all()      # the hole, filled: the ring's cells flood it
    if backend == "strict":   # the array backend's code, any implicit host/device transfer an error
        from test_backends import strict

        backend = strict()
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, p, tile=128, max_cell_diameter=32, scheduler="sync",
                       backend=backend)
    classes = m.classes.compute(scheduler="sync")
    # Those cells reach 250 px from their nuclei, past any halo: the mosaic holds to the
    # whole frame where cells are no wider than max_cell_diameter (2.9 % of all pixels differ
    # beyond it, against 42 % before).
    import cv2

    near = cv2.distanceTransform(np.uint8(whole.classes < 3), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= 32
    assert (classes == whole.classes)[near].mean() >= 0.999
    assert (classes == whole.classes).mean() >= 0.95


@pytest.mark.parametrize("seed", range(6))
def test_background_joined_across_seams_is_the_whole_frames(seed):
    # `_open_background` on random closed masks cut into tiles: the tiles' fill equals
    # `fill_holes` of the whole mask (snakes of background crossing many seams, holes
    # inside one tile, background on the edge only through another tile).
    from scipy import ndimage

    from livedead_gpu.mosaic import _open_background, _tiles

    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(40, 120)), int(rng.integers(40, 120)))
    closed = ndimage.binary_dilation(rng.random(shape) < 0.12, iterations=int(rng.integers(1, 3)))
    chunks = tuple(tile_chunks(n, int(rng.integers(8, 40)), 1) for n in shape)
    be = get_backend("cpu")
    parts, labels = [], []
    for (y0, y1), (x0, x1) in _tiles(shape, chunks):
        lab, n = be.label(~closed[y0:y1, x0:x1], connectivity=4)
        labels.append(lab)
        parts.append((n, lab[0], lab[-1], lab[:, 0], lab[:, -1]))
    filled = np.zeros(shape, bool)
    for ((y0, y1), (x0, x1)), lab, lut in zip(_tiles(shape, chunks), labels, _open_background(parts, chunks, shape)):
        filled[y0:y1, x0:x1] = ~lut[lab]
    assert (filled == be.fill_holes(closed)).all()
    assert not filled.all() and (filled & ~closed).any()   # background open to the edge, and holes


def test_store_writes_the_arrays_and_counts_segmenting_each_tile_once(frames, monkeypatch):
    # m.classes.compute() then m.counts() segments every tile twice (both lazy); computed in one
    # graph dask's optimisation had segmented them twice too. store: once.
    from livedead_gpu import mosaic

    calls = []
    segment = mosaic._tile_segment

    def counted(*args, **kwargs):
        calls.append(1)
        return segment(*args, **kwargs)

    monkeypatch.setattr(mosaic, "_tile_segment", counted)
    f = frames[1024]
    params = SegmentParams(nucleus_threshold="block-max")
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, params, tile=512, scheduler="sync")
    classes, cells = np.zeros(m.classes.shape, np.uint8), np.zeros(m.cells.shape, m.cells.dtype)
    counts = m.store(classes, cells, scheduler="sync")
    assert len(calls) == 4
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7, params)
    assert counts == (whole.n_live, whole.n_dead) == m.counts(scheduler="sync")
    assert (classes == m.classes.compute(scheduler="sync")).all() and (cells == m.cells.compute(scheduler="sync")).all()
    with pytest.raises(TypeError, match="optimize_graph"):
        m.store(classes, optimize_graph=True)


def test_depth_and_chunks():
    p = SegmentParams()
    # the gradient (Gaussian radius 4 and Sobel's pixel, then the padding fill's 10 and
    # its mask's 11: stages.gradient.gradient_reach); nucleus_smoothing "auto" may smooth
    # by 1 px: 5 px more than none
    assert overlap_depth(p, 64) == 5 + 10 + 11 + 2 * 4 + 2 + 2 + 2 + 5 + 64
    assert overlap_depth(SegmentParams(nucleus_smoothing=0), 64) == overlap_depth(p, 64) - 5
    assert overlap_depth(SegmentParams(nucleus_smoothing=1), 64) == overlap_depth(p, 64)
    assert overlap_depth(p, 10) < overlap_depth(p, 64)
    # a 20-px nucleus: the background (31-px window, 3 half-windows), the nucleus_edge cut
    # (a 21-px window, 10), the split's 10 px of window maxima, the Draq7-bright regions'
    # Gaussian (4) and radius (10)
    assert overlap_depth(p, 64, diameter=20) == overlap_depth(p, 64) + 45 + 10 + 10 + 14
    assert overlap_depth(SegmentParams(nucleus_edge=0), 64, diameter=20) == overlap_depth(p, 64) + 45 + 10 + 14
    assert overlap_depth(SegmentParams(nucleus_diameter_px=20), 64) == overlap_depth(p, 64, diameter=20)
    article = SegmentParams.from_preset("article")
    assert overlap_depth(article, 64, diameter=20) == overlap_depth(article, 64)
    with pytest.raises(ValueError, match="diameter"):
        overlap_depth(p, 64, diameter=0)
    assert tile_chunks(1000, 96, 83) == (96,) * 9 + (136,)
    assert tile_chunks(1000, 96, 30) == (96,) * 10 + (40,)
    assert tile_chunks(50, 96, 30) == (50,)


def test_errors_name_the_argument(frames):
    f = frames[1024]
    block = SegmentParams(nucleus_threshold="block-max")
    args = (f.brightfield, f.hoechst, f.draq7)
    with pytest.raises(ValueError, match=r"tile=64 .* overlap depth 104"):
        segment_mosaic(*args, block, tile=64)
    with pytest.raises(ValueError, match="multiple of coarseness"):
        segment_mosaic(*args, block, tile=250)
    with pytest.raises(ValueError, match="max_cell_diameter"):
        segment_mosaic(*args, block, tile=256, max_cell_diameter=0)
    # the halo grows with the nucleus diameter: given, checked at once; measured, once it is known
    # (5 px of it the reach of the Gaussian "auto" may put on the Hoechst)
    with pytest.raises(ValueError, match=r"tile=144 .* overlap depth 188 .*nucleus diameter 20.0"):
        segment_mosaic(*args, SegmentParams(nucleus_diameter_px=20), tile=144)
    with pytest.raises(ValueError, match=r"tile=112 .* overlap depth 1\d\d .*nucleus diameter"):
        segment_mosaic(*args, tile=112, scheduler="sync")
    with pytest.raises(ValueError, match="contrast.*touch"):
        segment_mosaic(*args, SegmentParams(dead_call="touch"), tile=256)
    with pytest.raises(ValueError, match="diameter_crop"):
        segment_mosaic(*args, block, tile=256, diameter_crop=32)
    with pytest.raises(TypeError, match="unexpected keyword.* tiles; .* num_workers"):
        segment_mosaic(*args, block, tiles=256)   # dask.compute would have ignored it
    with pytest.raises(ValueError, match="one shape"):
        segment_mosaic(f.brightfield, f.hoechst[:512], f.draq7, block, tile=256)
    import dask.array as da

    unknown = [da.from_array(a, chunks=256)[da.from_array(np.ones(1024, bool), chunks=256)] for a in args]
    with pytest.raises(ValueError, match=r"brightfield has chunks of unknown size .*compute_chunk_sizes"):
        segment_mosaic(*unknown, block, tile=256)   # was "must have one shape": nan != nan
    with pytest.raises(ValueError, match="dtype"):
        segment_mosaic(f.brightfield.astype(np.float32), f.hoechst, f.draq7, block, tile=256)
    with pytest.raises(TypeError, match="params must be a SegmentParams"):
        segment_mosaic(*args, {}, tile=256)
    with pytest.raises(TypeError, match="params must be a SegmentParams"):
        overlap_depth({})


def test_big_endian_mosaic_is_read_by_value():
    # '>u2' (a big-endian TIFF's memmap) passed the dtype check ("uint16") and went to OpenCV
    # byte-swapped: other thresholds (a saturated gradient one) and other classes, silently
    f = synthetic.make_frame((192, 192), n_cells=8, bit_depth=16, seed=7)
    channels = (f.brightfield, f.hoechst, f.draq7)
    params = SegmentParams.from_preset("article")
    whole = segment_frame(*channels, params)
    m = segment_mosaic(*(c.astype(">u2") for c in channels), params, tile=96, max_cell_diameter=24,
                       scheduler="sync")
    assert m.thresholds == whole.thresholds
    assert (m.classes.compute(scheduler="sync") == whole.classes).all()


@pytest.mark.gpu
def test_mosaic_on_the_gpu_backend_matches_whole_image(frames):
    f = frames[1024]
    params = SegmentParams(nucleus_threshold="block-max", dead_call="touch")
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, params, tile=256, backend="gpu", scheduler="sync")
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7, params, backend="gpu")
    assert m.thresholds["hoechst"] == whole.thresholds["hoechst"]
    assert m.thresholds["gradient"] == pytest.approx(whole.thresholds["gradient"], rel=1e-6)
    assert (m.classes.compute(scheduler="sync") == whole.classes).mean() >= 0.999


@pytest.mark.gpu
def test_default_params_on_the_gpu_backend_match_whole_image(frames):
    f = frames[1024]
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, tile=256, backend="gpu", scheduler="sync")
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7, backend="gpu")
    assert m.thresholds["hoechst"] == pytest.approx(whole.thresholds["hoechst"], rel=1e-6)
    assert (m.classes.compute(scheduler="sync") == whole.classes).mean() >= 0.999
    assert m.counts(scheduler="sync") == (whole.n_live, whole.n_dead)


@pytest.mark.data
@pytest.mark.parametrize("field", ["110_snap_3_0_31", "Aligned_after_1_MMStack_8-Pos_000_004_2_2_43",
                                   "feb_502_snap_2_2_35"])
def test_real_field_in_tiles_matches_whole_image(adcc_dir, field):
    """A real 16-bit ADCC field (11 rows of alignment padding in the Aligned one, set aside by
    both) cut into tiles gives the whole-image class mask and counts (100 % measured on all 8
    fields in 320-px tiles; in 256-px tiles two of these run, the others need a halo larger than
    the tile: a ValueError). The Aligned field's nuclei (53 px across) ask a halo of 306 px, so its
    499 rows left inside the padding make one tile: the mosaic's own path, set aside and pasted back."""
    import json

    import tifffile

    path = adcc_dir / "images" / f"{field}.tif"
    channels = json.loads(path.with_suffix(".json").read_text())["channels"]
    image = tifffile.imread(path)
    bf, ho, d7 = (image[channels.index(k)] for k in ("brightfield_channel", "live_nuclei_channel",
                                                      "dead_nuclei_channel"))
    p = SegmentParams(pixel_size=0.3112)
    tiled = segment_mosaic(bf, ho, d7, p, tile=320 if field.startswith("Aligned") else 256, max_cell_diameter=64)
    whole = segment_frame(bf, ho, d7, p)
    assert (np.asarray(tiled.classes) == whole.classes).mean() >= 0.999
    assert tiled.counts() == (whole.n_live, whole.n_dead)


@pytest.mark.parametrize("n_cells", [0, 3])
def test_empty_and_sparse_mosaics_equal_the_whole_frame(n_cells):
    # The contrast threshold's noise fallback (too few bright pixels to be nuclei) is taken from
    # the same samples in tiles as in the whole frame: the same threshold, the same masks.
    f = synthetic.make_frame(shape=(1024, 1024), n_cells=n_cells, seed=3)
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7)
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, tile=512, scheduler="sync")
    assert m.thresholds["hoechst"] == whole.thresholds["hoechst"]
    assert (m.classes.compute(scheduler="sync") == whole.classes).all()
    assert (whole.n_live + whole.n_dead) == n_cells


def test_grey_step_of_a_rescaled_mosaic_is_the_whole_frames():
    # 8-bit data shifted into 16 bits: the noise floors are 16 units. The tiles send their
    # grey levels on the statistics' grids, so the mosaic's thresholds equal the frame's.
    # The brightfield is a sawtooth of ramps: no second differences, so its noise is the floor.
    f = synthetic.make_frame(shape=(512, 512), n_cells=80, bit_depth=8, seed=1)
    yy, xx = np.mgrid[:512, :512]
    f = dataclasses.replace(f, brightfield=((xx + 2 * yy) % 97 + 60).astype(np.uint16))
    shifted = dataclasses.replace(f, **{k: getattr(f, k) * 16 for k in ("brightfield", "hoechst", "draq7")})
    m, _, whole = check(shifted, SegmentParams(), 256)
    ref = segment_frame(f.brightfield, f.hoechst, f.draq7)
    assert whole.thresholds["gradient_noise"] == pytest.approx(16 * ref.thresholds["gradient_noise"], rel=1e-3)
    assert (whole.n_live, whole.n_dead) == (ref.n_live, ref.n_dead)


def test_dim_hoechst_warns_as_the_whole_frame_does():
    # Nuclei at a mean of 3 noise sigmas: unsmoothed, segment_frame warns that
    # nucleus_smoothing = 1 finds them, and so does a mosaic (whole-mosaic statistics, the
    # objects and the smoothed look on the central crop); "auto" smooths both alike.
    f = synthetic.make_frame((512, 512), n_cells=60, dead_fraction=0.3, bit_depth=12, seed=1)
    rng = np.random.default_rng(100)
    dim = np.clip(np.rint(0.04 * f.hoechst + rng.normal(0, 0.003 * 4095, f.hoechst.shape)) + 40, 0, 4095)
    dim = dim.astype(np.uint16)
    match = "too dim to threshold pixel by pixel: nucleus_smoothing = 1"
    plain = SegmentParams(nucleus_smoothing=0.0)
    with pytest.warns(UserWarning, match=match):
        segment_frame(f.brightfield, dim, f.draq7, plain)
    with pytest.warns(UserWarning, match=match):
        segment_mosaic(f.brightfield, dim, f.draq7, plain, tile=256, scheduler="sync")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        segment_mosaic(f.brightfield, f.hoechst, f.draq7, plain, tile=256, scheduler="sync")
        m, classes, whole = check(dataclasses.replace(f, hoechst=dim), SegmentParams(), 256)
    assert m.thresholds["hoechst_smoothing"] == whole.thresholds["hoechst_smoothing"] == 1.0
    assert whole.n_dead == 18 and 40 <= whole.n_live <= 48   # 18 + 42 drawn; unsmoothed 27 live


def test_a_background_subtracted_stain_warns_in_tiles_too(frames):
    f = frames[1000]
    clipped = np.clip(f.draq7.astype(np.int64) - 21, 0, None).astype(np.uint16)
    with pytest.warns(UserWarning, match=r"draq7 has \d+% of its pixels at 0 .*background-subtracted"):
        segment_mosaic(f.brightfield, f.hoechst, clipped, SegmentParams(bleed=0.0), tile=256, scheduler="sync")
