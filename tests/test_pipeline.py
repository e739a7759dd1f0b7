"""segment_frame end to end on synthetic frames, and its handling of bad input."""

import itertools

import cv2
import numpy as np
import pytest

from livedead_gpu import SegmentParams, segment_frame, synthetic


def iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def outline_f1(truth, found, tolerance=2):
    """Boundary F1: outline pixels within ``tolerance`` px of the other's outline."""
    def near(mask):
        return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5) <= tolerance

    precision = near(truth)[found].mean()
    recall = near(found)[truth].mean()
    return 2 * precision * recall / (precision + recall)


@pytest.fixture(scope="module", params=[(8, 0), (12, 1), (16, 2)], ids=["8bit", "12bit", "16bit"])
def frame_and_result(request):
    bit_depth, seed = request.param
    f = synthetic.make_frame(shape=(256, 256), n_cells=20, dead_fraction=0.3, bit_depth=bit_depth, seed=seed)
    return f, segment_frame(f.brightfield, f.hoechst, f.draq7, intermediates=True)


def test_class_agreement_with_ground_truth(frame_and_result):
    # Floors sit ~0.05-0.1 under what the default parameters measure on these frames
    # (cell IoU 0.70-0.71, nuclei 0.72-0.78, outline F1 0.89 within 3 px): the
    # Gaussian before the Sobel (sigma 1 px) and the cells' bright halo put the found
    # edge 1-2 px outside the drawn one, which costs a 20-px cell ~0.1 of IoU (0.8
    # without the smoothing, which the real low-contrast fields need); thresholds at
    # 1.2x the background peak trim the nuclei's soft edges.
    f, r = frame_and_result
    assert iou(f.classes > 0, r.classes > 0) >= 0.65
    assert iou(f.classes == 3, r.classes == 3) >= 0.65
    assert iou(f.classes == 4, r.classes == 4) >= 0.65
    assert outline_f1(f.classes == 2, r.classes == 2, tolerance=3) >= 0.8


def test_unsmoothed_outlines_are_tighter():
    # Without the Gaussian the edge sits within 2 px (F1 0.84-0.90 measured).
    f = synthetic.make_frame(shape=(256, 256), n_cells=20, dead_fraction=0.3, bit_depth=12, seed=4)
    r = segment_frame(f.brightfield, f.hoechst, f.draq7, SegmentParams(smoothing=0))
    assert iou(f.classes > 0, r.classes > 0) >= 0.72
    assert outline_f1(f.classes == 2, r.classes == 2) >= 0.78


def test_counts_match_ground_truth(frame_and_result):
    f, r = frame_and_result
    assert r.n_live == f.n_live
    assert r.n_dead == f.n_dead
    assert r.n_live + r.n_dead == r.nuclei.max() == len(r.dead) - 1


def test_result_contents(frame_and_result):
    f, r = frame_and_result
    shape = f.brightfield.shape
    assert r.classes.dtype == np.uint8 and r.classes.shape == shape
    assert set(np.unique(r.classes)) <= {0, 1, 2, 3, 4}
    assert r.cells.dtype == np.int32 and r.nuclei.dtype == np.int32
    # Every nucleus lies in its own cell; cell ids are nucleus ids.
    inside = r.nuclei > 0
    assert (r.cells[inside] == r.nuclei[inside]).mean() > 0.99
    assert set(np.unique(r.cells)) - {0} <= set(range(1, r.nuclei.max() + 1))
    assert r.live_nuclei.max() > 0 and (r.live_nuclei > 0).sum() + (r.dead_nuclei > 0).sum() == inside.sum()
    assert set(r.thresholds) == {"gradient", "gradient_scale", "gradient_noise", "hoechst", "draq7", "bleed",
                                 "hoechst_smoothing"}
    assert r.thresholds["hoechst_smoothing"] == 0.0   # bright nuclei: "auto" left them unsmoothed
    assert set(r.intermediates) == {"gradient", "cell_area", "hoechst_mask", "draq7_mask", "outlines"}
    assert r.intermediates["gradient"].dtype == np.float32
    # With the default "ratio" call the Draq7 mask is the dead nuclei, whole.
    assert r.n_dead and (r.intermediates["draq7_mask"] == (r.dead_nuclei > 0)).all()
    assert r.backend == "cpu" and r.params == SegmentParams()


def test_draq7_wins_and_time_series_counts():
    frames = synthetic.make_timeseries(shape=(192, 192), n_cells=14, n_times=4, death_rate=0.3, seed=5)
    dead = []
    for f in frames:
        r = segment_frame(f.brightfield, f.hoechst, f.draq7)
        assert abs(r.n_dead - f.n_dead) <= 1 and abs(r.n_live - f.n_live) <= 1
        dead.append(r.n_dead)
    assert dead[-1] > dead[0]


def test_empty_frame_has_no_cells():
    flat = np.full((64, 64), 1000, np.uint16)
    r = segment_frame(flat, flat, flat)
    assert r.n_live == r.n_dead == 0
    assert not r.classes.any() and not r.cells.any()


GOOD = np.zeros((64, 64), np.uint16)


@pytest.mark.parametrize(
    "channels, error, match",
    [
        ((GOOD, GOOD, np.zeros((64, 65), np.uint16)), ValueError, r"channel shapes differ: .*draq7 \(64, 65\)"),
        ((np.zeros((64, 64, 3), np.uint8), GOOD, GOOD), ValueError, r"brightfield must be 2-D .*RGB"),
        ((GOOD, np.zeros((4, 64, 64), np.uint16), GOOD), ValueError, r"hoechst must be 2-D"),
        ((GOOD, GOOD, np.zeros(64, np.uint16)), ValueError, r"draq7 must be 2-D"),
        ((np.zeros((64, 64), bool), GOOD, GOOD), TypeError, r"brightfield has dtype bool"),
        ((GOOD, np.zeros((0, 64), np.uint16), GOOD), ValueError, r"hoechst is empty"),
        ((GOOD, GOOD, np.zeros((8, 64), np.uint16)), ValueError, r"draq7 has shape \(8, 64\).*16 px \(params.coarseness"),
        ((np.full((64, 64), np.nan, np.float32), GOOD, GOOD), ValueError, r"brightfield holds 4096 NaN"),
        ((GOOD, np.full((64, 64), -3, np.int16), GOOD), ValueError, r"hoechst has values in \[-3, -3\]"),
        ((GOOD, GOOD, np.full((64, 64), 0.5)), ValueError, r"draq7 is a float image .* normalised"),
        # a flat-field ratio around 1 would round to 1-2 grey levels: the cells lost without a word
        ((np.linspace(0.56, 1.44, 64 * 64).reshape(64, 64), GOOD, GOOD), ValueError,
         r"brightfield is a float image with values in \[0.56, 1.44\], 1 grey level\(s\) once rounded; .*flat-field"),
        ((GOOD, GOOD, np.zeros((64, 64), complex)), TypeError, r"draq7 has dtype complex"),
        (("image", GOOD, GOOD), TypeError, r"brightfield must be a 2-D array"),
        ((GOOD, np.ma.masked_array(GOOD, GOOD == 0), GOOD), TypeError, r"hoechst is a masked array"),
    ],
)
def test_bad_input(channels, error, match):
    with pytest.raises(error, match=match):
        segment_frame(*channels)


def test_bad_params_and_backend():
    with pytest.raises(TypeError, match="params must be a SegmentParams"):
        segment_frame(GOOD, GOOD, GOOD, params={"offset": 1.2})
    with pytest.raises(ValueError, match="backend must be"):
        segment_frame(GOOD, GOOD, GOOD, backend="tpu")
    with pytest.raises(ValueError, match="coarseness"):
        segment_frame(GOOD, GOOD, GOOD, params=SegmentParams(coarseness=128))


@pytest.mark.parametrize("params", [{}, 0, "", False])
def test_falsy_params_are_refused_not_taken_for_the_defaults(params):
    # `params or SegmentParams()` ran the defaults for params={} without a word
    with pytest.raises(TypeError, match="params must be a SegmentParams"):
        segment_frame(GOOD, GOOD, GOOD, params=params)


def test_other_dtypes_are_converted():
    f = synthetic.make_frame(shape=(128, 128), n_cells=8, bit_depth=12, seed=3)
    ref = segment_frame(f.brightfield, f.hoechst, f.draq7)
    as_float = segment_frame(*(c.astype(np.float64) for c in (f.brightfield, f.hoechst, f.draq7)))
    as_int = segment_frame(*(c.astype(np.int32) for c in (f.brightfield, f.hoechst, f.draq7)))
    assert (as_float.classes == ref.classes).all() and (as_int.classes == ref.classes).all()


@pytest.mark.filterwarnings("error")
def test_dim_float_stains_pass_however_few_their_levels():
    # a dim 8-bit Draq7 channel stored as float (values 0..5) is no ratio image, nor is one
    # divided by a vignetting flat of 1.05-1.1 (fractions, 0..4.7: an empty well's Draq7)
    rng = np.random.default_rng(0)
    dim = rng.integers(0, 6, (64, 64))
    r = segment_frame(GOOD, GOOD, dim.astype(np.float32))
    assert (r.classes == segment_frame(GOOD, GOOD, dim.astype(np.uint16)).classes).all()
    segment_frame(GOOD, GOOD, (dim / np.linspace(1.05, 1.1, 64)).astype(np.float32))


def test_float16_is_converted_without_overflow_warnings():
    # comparing a float16 maximum with 65535 cast 65535 to float16 (inf): three
    # "overflow encountered in cast" RuntimeWarnings per frame
    image = np.full((32, 32), 1000, np.float16)
    r = segment_frame(image, image, image)
    assert (r.classes == segment_frame(*(image.astype(np.uint16),) * 3).classes).all()


_DEGENERATE = {
    "zeros": lambda rng, shape, dtype: np.zeros(shape, dtype),
    "constant": lambda rng, shape, dtype: np.full(shape, 100, dtype),
    "saturated": lambda rng, shape, dtype: np.full(shape, np.iinfo(dtype).max, dtype),
    "noise": lambda rng, shape, dtype: rng.integers(0, np.iinfo(dtype).max, shape).astype(dtype),
    "faint": lambda rng, shape, dtype: rng.integers(0, 3, shape).astype(dtype),
}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(16, 16), (64, 64), (17, 120)])
def test_degenerate_frames_segment(shape, dtype):
    """Valid but contentless frames (blank, saturated, pure noise) give a mask, not a crash."""
    rng = np.random.default_rng(0)
    for bf, ho, d7 in itertools.product(_DEGENERATE, repeat=3):
        channels = [_DEGENERATE[k](rng, shape, dtype) for k in (bf, ho, d7)]
        for separation in ("watershed", "voronoi"):
            r = segment_frame(*channels, SegmentParams(separation=separation))
            assert r.classes.shape == shape and r.classes.max() <= 4, (bf, ho, d7, separation)
            assert len(r.dead) == r.nuclei.max() + 1


@pytest.mark.parametrize("margins", [(0, 0, 128, 0), (40, 11, 0, 64), (0, 0, 0, 200)])
def test_alignment_padding_is_set_aside(margins):
    """Margins of 0 in every channel (a registered movie's padding): a quarter of the frame had
    made the Hoechst noise read 0 (no nucleus found); the frame inside them is segmented and
    pasted back, the margins background."""
    import warnings

    from livedead_gpu.evaluate import match_instances
    from livedead_gpu.pipeline import bleed_readings

    top, bottom, left, right = margins
    f = synthetic.make_frame((512, 512), n_cells=60, dead_fraction=0.3, seed=1)
    padded = []
    for a in (f.brightfield, f.hoechst, f.draq7):
        b = np.zeros_like(a)
        b[top : 512 - bottom, left : 512 - right] = a[top : 512 - bottom, left : 512 - right]
        padded.append(b)
    # segmented with one line of the zeros, which shows the cell area where the padding was
    top, bottom, left, right = (m - 1 if m else 0 for m in margins)
    inside = np.s_[top : 512 - bottom, left : 512 - right]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # and no "looks background-subtracted" for the padding
        got = segment_frame(*padded, intermediates=True)
    part = segment_frame(*(a[inside] for a in padded), intermediates=True)
    assert got.classes.shape == (512, 512) and (got.n_live, got.n_dead) == (part.n_live, part.n_dead)
    assert np.array_equal(got.classes[inside], part.classes) and not got.classes.sum() - part.classes.sum()
    assert all(np.array_equal(got.intermediates[k][inside], part.intermediates[k]) for k in part.intermediates)
    truth = np.zeros_like(f.nuclei)
    truth[inside] = f.nuclei[inside]
    assert match_instances(truth, got.nuclei).f1 >= 0.95
    assert np.array_equal(bleed_readings(*padded[1:], brightfield=padded[0]),
                          bleed_readings(*(a[inside] for a in padded[1:]), brightfield=padded[0][inside]))
    # stains 0 in the margins but not the brightfield: no padding for segment_frame, nor for the bleed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = segment_frame(f.brightfield, *padded[1:])
        readings = bleed_readings(*padded[1:], brightfield=f.brightfield)
    assert readings.shape[1] == len(whole.dead) - 1


@pytest.mark.parametrize("shift", [(10.5, 0.0), (0.0, -7.3), (6.25, 12.75)])
def test_a_sub_pixel_registration_puts_no_cell_area_along_its_padding(shift):
    """Shifted by a fraction of a pixel (bilinear), the image's first line beside the zeros is a
    dim blend of both; cropped at the zeros its edge had made the 3 lines beside them all cell
    area (0.2 elsewhere). One line of zeros kept shows the cell-area stage where the padding is."""
    import cv2

    dx, dy = shift
    f = synthetic.make_frame((512, 512), n_cells=60, dead_fraction=0.3, seed=3)
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    got = segment_frame(*(cv2.warpAffine(a, m, (512, 512), flags=cv2.INTER_LINEAR)
                          for a in (f.brightfield, f.hoechst, f.draq7)))
    assert (got.n_live, got.n_dead) == (f.n_live, f.n_dead)
    cell = np.isin(got.classes, (1, 2))
    beside = []
    if dx:
        beside.append(cell[:, int(np.ceil(dx)) - 1 : int(np.ceil(dx)) + 3])
    if dy:
        beside.append(cell[512 + int(np.floor(dy)) - 3 : 512 + int(np.floor(dy)) + 1] if dy < 0
                      else cell[int(np.ceil(dy)) - 1 : int(np.ceil(dy)) + 3])
    for lines in beside:
        assert lines.mean() < cell.mean() + 0.05   # 0.75 before: 3 of the 4 lines all cell area


@pytest.mark.parametrize("shift", [(0.0, 0.3), (0.5, 0.0), (0.4, 0.7)])
def test_a_pure_sub_pixel_shift_puts_no_cell_area_along_its_dim_edges(shift):
    """Shifted by under a pixel (bilinear), no zero is left: only the outer line the image moved
    in from, dimmed by the blend with the zeros (`stages.gradient.dim_edges`). Its step had made
    the 4 outer lines all cell area (0.3 px: 1.0, 1.0, 1.0, 0.9 against 0.08); a camera's
    darker edge column did the same. They are padding now, to the cell stage too."""
    import cv2

    dy, dx = shift
    f = synthetic.make_frame((512, 512), n_cells=60, dead_fraction=0.3, seed=0)
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    shifted = [np.rint(cv2.warpAffine(a.astype(np.float32), m, (512, 512), flags=cv2.INTER_LINEAR)).astype(a.dtype)
               for a in (f.brightfield, f.hoechst, f.draq7)]
    dark = f.brightfield.copy()
    dark[:, 0] = np.rint(dark[:, 0] * 0.7).astype(dark.dtype)
    for channels, edges in ((shifted, (dy > 0, dx > 0)), ((dark, f.hoechst, f.draq7), (False, True))):
        got = segment_frame(*channels)
        assert (got.n_live, got.n_dead) == (f.n_live, f.n_dead)
        cell = np.isin(got.classes, (1, 2))
        for lines, dimmed in ((cell[:4], edges[0]), (cell[:, :4], edges[1])):
            if dimmed:
                assert lines.mean() < cell.mean() + 0.05


def test_a_background_subtracted_stain_warns():
    f = synthetic.make_frame((256, 256), n_cells=20, seed=1)
    clipped = np.clip(f.draq7.astype(np.int64) - 21, 0, None).astype(np.uint16)
    with pytest.warns(UserWarning, match=r"draq7 has \d+% of its pixels at 0 .*background-subtracted"):
        segment_frame(f.brightfield, f.hoechst, clipped)
    clipped = np.clip(f.hoechst.astype(np.int64) - 80, 0, None).astype(np.uint16)
    with pytest.warns(UserWarning, match=r"hoechst has \d+% of its pixels at 0"):
        segment_frame(f.brightfield, clipped, f.draq7)
