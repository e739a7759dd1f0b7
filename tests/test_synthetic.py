import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedead_gpu.synthetic import SyntheticFrame, make_frame, make_plate, make_timeseries

ARRAYS = ("brightfield", "hoechst", "draq7", "classes", "cells", "nuclei", "dead")
SHIFTS = [(0, 1), (1, 0), (1, 1), (1, -1)]


def pairs(labels, shifts=SHIFTS[:2]):
    """Unordered pairs of distinct non-zero labels that are neighbours (for the given shifts)."""
    found = set()
    m, n = labels.shape
    for dy, dx in shifts:
        a = labels[: m - dy, max(0, -dx) : n - max(0, dx)]
        b = labels[dy:, max(0, dx) : n - max(0, -dx)]
        hit = (a > 0) & (b > 0) & (a != b)
        found |= {tuple(sorted(p)) for p in zip(a[hit].tolist(), b[hit].tolist())}
    return found


def outline(labels):
    """Label pixels with a 4-neighbour of another label; the frame counts as the same label."""
    p = np.pad(labels, 1, mode="edge")
    centre = p[1:-1, 1:-1]
    differs = np.zeros(labels.shape, bool)
    for nb in (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]):
        differs |= nb != centre
    return differs & (labels > 0)


def sobel(image):
    f = image.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def far_from_cells(frame, px=8):
    near = cv2.dilate((frame.cells > 0).astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8))
    return near == 0


def check_classes(f):
    n = len(f.dead) - 1
    nuc = f.nuclei > 0
    assert np.array_equal(f.classes > 0, f.cells > 0)
    assert np.array_equal(f.classes == 4, nuc & f.dead[f.nuclei])
    assert np.array_equal(f.classes == 3, nuc & ~f.dead[f.nuclei])
    # (nuclei that touch across their cells' boundary hide the outline under them; no other does)
    assert np.array_equal(f.classes == 2, outline(f.cells) & ~nuc)
    if not pairs(f.nuclei, SHIFTS):
        assert not (outline(f.cells) & nuc).any(), "a nucleus on a cell outline"
    assert np.array_equal(f.cells[nuc], f.nuclei[nuc]), "a nucleus lies outside its cell"
    assert set(np.unique(f.cells)) == set(range(n + 1))
    assert set(np.unique(f.nuclei)) == set(range(n + 1)), "a cell without a nucleus"
    assert not f.dead[0]
    assert f.n_live + f.n_dead == n


def test_deterministic_for_equal_seeds():
    a, b = make_frame(seed=3), make_frame(seed=3)
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_a_seed_sequence_gives_equal_frames_each_time():
    # make_frame spawned from the caller's SeedSequence itself: the second call with the same
    # object drew other frames (and the caller's sequence had changed)
    seq = np.random.SeedSequence(7)
    for make in (lambda s: [make_frame((64, 64), 2, seed=s)],
                 lambda s: list(make_plate(("A1",), n_times=2, shape=(64, 64), n_cells=2, seed=s).values())):
        a, b = make(seq), make(seq)
        assert all(np.array_equal(x.brightfield, y.brightfield) for x, y in zip(a, b))
    assert seq.n_children_spawned == 0


def test_differs_for_different_seeds():
    a, b = make_frame(seed=3), make_frame(seed=4)
    assert not np.array_equal(a.cells, b.cells)
    assert not np.array_equal(a.brightfield, b.brightfield)


@pytest.mark.parametrize("shape", [(256, 256), (64, 96), (97, 33)])
def test_dtypes_and_shapes(shape):
    f = make_frame(shape, n_cells=2, seed=1)
    assert isinstance(f, SyntheticFrame)
    for name, dtype in [("brightfield", np.uint16), ("hoechst", np.uint16), ("draq7", np.uint16),
                        ("classes", np.uint8), ("cells", np.int32), ("nuclei", np.int32)]:
        a = getattr(f, name)
        assert a.shape == shape and a.dtype == dtype, name
    assert f.dead.dtype == bool and f.dead.shape == (f.cells.max() + 1,)
    assert f.time == 0


@pytest.mark.parametrize("bit_depth", [8, 12, 16])
def test_values_within_bit_depth(bit_depth):
    f = make_frame(bit_depth=bit_depth, seed=2)
    full = 2**bit_depth - 1
    for name in ("brightfield", "hoechst", "draq7"):
        assert getattr(f, name).max() <= full, name
    background = f.brightfield[f.cells == 0]
    assert 0.3 * full < np.median(background) < 0.5 * full
    assert np.mean(f.brightfield == full) < 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_classes_match_instances(seed):
    check_classes(make_frame(seed=seed))


def test_outline_is_a_real_label_change():
    f = make_frame(seed=5)
    p = np.pad(f.cells, 1, mode="edge")
    same = np.ones(f.cells.shape, bool)
    for nb in (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]):
        same &= nb == f.cells
    assert not np.any((f.classes == 2) & same)


@pytest.mark.parametrize("seed", range(10))
def test_no_cell_lost(seed):
    # Centres are placed by rejection sampling with a free-space check, far from the
    # packing limit at this density, and a nucleus lies in the core of its cell that no
    # neighbour can claim, so every requested cell is drawn: the tolerance is zero.
    f = make_frame(seed=seed)
    assert len(f.dead) - 1 == 20
    assert len(np.unique(f.nuclei)) - 1 == 20


def test_nuclei_well_inside_and_apart():
    for seed in range(6):
        f = make_frame(seed=seed, touching=1.0)
        assert not pairs(f.nuclei, SHIFTS), "nuclei of two cells touch"
        ring = cv2.dilate((f.nuclei > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert not np.any(ring & (f.classes == 2)), "a nucleus touches a cell outline"
        assert np.bincount(f.nuclei.ravel())[1:].min() >= 20


def test_nucleus_size_relative_to_cell():
    f = make_frame(seed=0)
    ratio = np.sqrt(np.bincount(f.nuclei.ravel())[1:] / np.bincount(f.cells.ravel())[1:])
    assert np.all((ratio > 0.25) & (ratio < 0.6))


def test_touching_cells_when_requested():
    f = make_frame(seed=0, touching=0.5)
    assert len(pairs(f.cells)) >= 5
    assert not pairs(make_frame(seed=0, touching=0.0).cells)


def test_default_density():
    covers = [np.mean(make_frame(seed=s).cells > 0) for s in range(5)]
    assert 0.12 < np.mean(covers) < 0.3


def test_most_blocks_empty():
    # The block-max threshold takes the most frequent 16 x 16 block maximum as background.
    for seed in range(5):
        f = make_frame(seed=seed)
        held = (f.cells > 0).reshape(16, 16, 16, 16).any(axis=(1, 3))
        assert held.mean() < 0.5


@pytest.mark.parametrize("bit_depth", [8, 12, 16])
def test_sobel_gradient_of_cells_exceeds_background(bit_depth):
    f = make_frame(bit_depth=bit_depth, seed=1)
    g = sobel(f.brightfield)
    assert g[f.cells > 0].mean() > 3 * g[far_from_cells(f)].mean()


def test_block_max_threshold_separates_cells_from_background():
    f = make_frame(seed=0)
    g = np.floor(sobel(f.brightfield)).astype(np.int64)
    peak = np.argmax(np.bincount(g.reshape(16, 16, 16, 16).max(axis=(1, 3)).ravel())[1:]) + 1
    t = int(1.2 * peak + 1)
    assert np.mean(g[far_from_cells(f)] > t) < 0.005
    assert np.mean(g[f.cells > 0] > t) > 0.5


def test_fluorescence_live_vs_dead():
    f = make_frame(seed=0, dead_fraction=0.5)
    live = f.classes == 3
    dead = f.classes == 4
    assert live.any() and dead.any()
    assert f.draq7[dead].mean() > 5 * f.draq7[live].mean()
    assert f.hoechst[dead].mean() < 0.6 * f.hoechst[live].mean()
    assert f.hoechst[live].mean() > 5 * f.hoechst[f.cells == 0].mean()


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_dead_fraction(fraction):
    f = make_frame(seed=0, dead_fraction=fraction)
    assert f.n_dead == round(fraction * 20)
    assert not (f.classes == 4).any() if fraction == 0 else (f.classes == 4).any()


def test_no_cells():
    f = make_frame(n_cells=0)
    assert f.cells.max() == 0 and f.classes.max() == 0
    assert f.dead.tolist() == [False] and f.n_live == f.n_dead == 0


def test_crowded_frame_warns_and_stays_consistent():
    with pytest.warns(UserWarning, match="n_cells"):
        f = make_frame((64, 64), n_cells=50)
    assert 0 < f.cells.max() < 50
    check_classes(f)


def test_cells_larger_than_the_frame_are_left_out_with_the_warning():
    # cell_radius=(100, 100) in a 64 x 64 frame failed in numpy with "high - low < 0"
    with pytest.warns(UserWarning, match="placed 0 of n_cells=5"):
        f = make_frame((64, 64), n_cells=5, cell_radius=(100, 100))
    assert f.cells.max() == 0
    with pytest.warns(UserWarning, match="placed 1 of n_cells=3"):  # one fits: only its nucleus must lie inside
        f = make_frame((64, 64), n_cells=3, touching=0, cell_radius=(40, 40))
    check_classes(f)


def test_timeseries():
    ts = make_timeseries(n_times=6, death_rate=0.3, seed=2)
    assert [f.time for f in ts] == list(range(6))
    for f in ts:
        check_classes(f)
        assert np.array_equal(f.cells, ts[0].cells) and np.array_equal(f.nuclei, ts[0].nuclei)
    dead = np.array([f.dead for f in ts])
    assert not dead[0].any()
    assert np.all(dead[1:] >= dead[:-1]), "a dead cell came back to life"
    assert 0 < dead[-1].sum() < len(dead[-1]) - 1
    assert not np.array_equal(ts[0].brightfield, ts[1].brightfield)
    for f in ts[1:]:
        live, dead_nuc = f.classes == 3, f.classes == 4
        if dead_nuc.any():
            assert f.draq7[dead_nuc].mean() > 5 * f.draq7[live].mean()
            assert f.hoechst[dead_nuc].mean() < f.hoechst[live].mean()


def test_timeseries_hoechst_fades_and_draq7_stays():
    ts = make_timeseries(n_times=6, death_rate=0.3, seed=2)
    cell = int(np.flatnonzero(ts[1].dead & ~ts[0].dead)[0])
    nuc = ts[0].nuclei == cell
    h = [f.hoechst[nuc].mean() for f in ts]
    d = [f.draq7[nuc].mean() for f in ts]
    assert h[1] < 0.6 * h[0]
    assert np.all(np.diff(h[1:]) < 0)
    assert d[0] < 0.1 * d[1] and min(d[1:]) > 0.6 * max(d[1:])


def test_timeseries_frames_do_not_depend_on_length():
    a = make_timeseries(n_times=2, seed=7)[1]
    b = make_timeseries(n_times=4, seed=7)[1]
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_death_rate_extremes():
    assert not any(f.n_dead for f in make_timeseries(n_times=3, death_rate=0.0))
    ts = make_timeseries(n_times=2, death_rate=1.0)
    assert ts[0].n_dead == 0 and ts[1].n_live == 0


def test_plate_keys_and_kill_curves():
    wells = ("A1", "A2", "A3")
    plate = make_plate(wells, sites=2, n_times=4, seed=1)
    assert set(plate) == {(w, s, t) for w in wells for s in range(2) for t in range(4)}
    assert not np.array_equal(plate["A1", 0, 0].cells, plate["A1", 1, 0].cells)
    final = [np.mean([plate[w, s, 3].n_dead for s in range(2)]) for w in wells]
    assert final[0] < final[1] < final[2]
    assert final[0] <= 3


def test_plate_death_rates_override():
    plate = make_plate(("B1", "B2"), n_times=2, death_rates=(0.0, 1.0))
    assert plate["B1", 0, 1].n_dead == 0 and plate["B2", 0, 1].n_live == 0
    with pytest.raises(ValueError, match="death_rates"):
        make_plate(("B1", "B2"), death_rates=(0.1,))
    # a scalar failed with "object of type 'float' has no len()"; a bad rate named death_rate
    with pytest.raises(ValueError, match=r"death_rates must give one rate per well \(1\), got 0.1"):
        make_plate(("B1",), death_rates=0.1)
    with pytest.raises(ValueError, match=r"death_rates\[1\] must be a number in \[0, 1\], got 2.0"):
        make_plate(("B1", "B2"), death_rates=[0.1, 2.0])


@pytest.mark.parametrize("func, kwargs, name", [
    (make_frame, {"shape": (31, 64)}, "shape"),
    (make_frame, {"shape": (64,)}, "shape"),
    (make_frame, {"shape": (64.5, 64)}, "shape"),
    (make_frame, {"shape": "ab"}, "shape"),
    (make_frame, {"n_cells": -1}, "n_cells"),
    (make_frame, {"n_cells": 2.5}, "n_cells"),
    (make_frame, {"dead_fraction": -0.1}, "dead_fraction"),
    (make_frame, {"dead_fraction": 1.5}, "dead_fraction"),
    (make_frame, {"bit_depth": 10}, "bit_depth"),
    (make_frame, {"cell_radius": (0, 5)}, "cell_radius"),
    # under 4 px a cell had no room for a nucleus, yet counted as live or dead
    (make_frame, {"cell_radius": (3, 3)}, r"cell_radius must be \(low, high\) px with 4 <= low"),
    (make_frame, {"cell_radius": (5, float("inf"))}, "cell_radius"),
    (make_frame, {"touching": 2}, "touching"),
    (make_frame, {"touching_nuclei": -0.1}, "touching_nuclei"),
    (make_plate, {"touching_nuclei": "all"}, "touching_nuclei"),
    (make_frame, {"gap": -9.5}, r"gap must be a number of px in \[-cell_radius\[0\], 1000\] = \[-9, 1000\]"),
    (make_frame, {"gap": float("nan")}, "gap"),
    (make_plate, {"gap": True}, "gap"),
    (make_timeseries, {"n_times": 0}, "n_times"),
    (make_timeseries, {"death_rate": 1.5}, "death_rate"),
    (make_timeseries, {"bit_depth": 32}, "bit_depth"),
    (make_plate, {"wells": ()}, "wells"),
    (make_plate, {"wells": "A1"}, "wells"),
    (make_plate, {"sites": 0}, "sites"),
    (make_plate, {"n_times": 0}, "n_times"),
    (make_frame, {"seed": -1}, "seed"),          # numpy's bare "expected non-negative integer"
    (make_frame, {"seed": 1.5}, "seed"),
    (make_timeseries, {"seed": "a"}, "seed"),
])
def test_bad_arguments(func, kwargs, name):
    with pytest.raises(ValueError, match=name) as err:
        func(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(err.value)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(32, 160),
    cols=st.integers(32, 160),
    n_cells=st.integers(0, 12),
    dead_fraction=st.floats(0, 1),
    touching=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    gap=st.floats(-9, 12),
    touching_nuclei=st.one_of(st.just(0.0), st.floats(0, 1)),
)
def test_invariants(rows, cols, n_cells, dead_fraction, touching, seed, gap, touching_nuclei):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small frames may be crowded
        f = make_frame((rows, cols), n_cells, dead_fraction, seed=seed, touching=touching, gap=gap,
                       touching_nuclei=touching_nuclei)
    check_classes(f)
    if touching_nuclei == 0:
        assert not pairs(f.nuclei, SHIFTS)
    else:
        assert pairs(f.nuclei, SHIFTS) <= pairs(f.cells, SHIFTS)


@pytest.mark.parametrize("seed", range(3))
def test_touching_nuclei(seed):
    # Every cell in a touching pair, every pair's nuclei touching across the cells' boundary,
    # each nucleus one piece in its own cell, a dimmer line where they meet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = make_frame((256, 256), 30, dead_fraction=0.0, seed=seed, touching=1.0, touching_nuclei=1.0)
    check_classes(f)
    met = pairs(f.nuclei)
    assert len(met) >= 0.8 * f.n_live / 2 and met <= pairs(f.cells)
    for label in range(1, f.n_live + 1):
        assert cv2.connectedComponents(np.uint8(f.nuclei == label))[0] == 2
    parting = outline(f.nuclei) & ~outline(np.where(f.nuclei > 0, 1, 0))
    inner = cv2.distanceTransform(np.uint8(f.nuclei > 0), cv2.DIST_L2, 5) >= 3
    assert parting.sum() > 2 * len(met)
    assert f.hoechst[parting].mean() < 0.8 * f.hoechst[inner].mean()
    half = make_frame((256, 256), 30, seed=seed, touching=1.0, touching_nuclei=0.5)
    assert 0.2 * len(pairs(half.cells)) <= len(pairs(half.nuclei)) <= 0.8 * len(pairs(half.cells))


@pytest.mark.parametrize("seed", range(3))
def test_the_smallest_cells_packed_tightest_keep_their_nuclei(seed):
    # cell_radius (4, 4) at gap -4: cells squeezed to no room for a nucleus had been counted
    # (112 of them over 30 frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = make_frame((128, 128), n_cells=200, seed=seed, cell_radius=(4, 4), gap=-4)
    check_classes(f)
    assert f.n_live + f.n_dead > 100


@pytest.mark.parametrize("seed", range(3))
def test_a_negative_gap_packs_a_confluent_sheet(seed):
    # The default gap leaves cells in pairs at most, about a third of the frame covered; real
    # confluent wells are one sheet. gap=-9 packs the cells: each keeps one connected piece and
    # its nucleus, nuclei stay apart.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # it places as many as fit
        f = make_frame((256, 256), n_cells=200, seed=seed, gap=-9)
    check_classes(f)
    assert (f.classes > 0).mean() > 0.8
    n, sheets = cv2.connectedComponents(np.uint8(f.cells > 0), connectivity=4)
    assert max(len(np.unique(f.cells[sheets == k])) for k in range(1, n)) > 50
    for label in range(1, len(f.dead)):
        assert cv2.connectedComponents(np.uint8(f.cells == label), connectivity=4)[0] == 2
    assert not pairs(f.nuclei, SHIFTS)


@pytest.mark.parametrize("seed", range(5))
def test_every_counted_cell_has_its_nucleus_at_the_smallest_radius(seed):
    f = make_frame((128, 128), n_cells=20, cell_radius=(4, 4), seed=seed)
    nuclei = np.unique(f.nuclei[f.nuclei > 0])
    assert len(nuclei) == f.n_live + f.n_dead
    assert len(np.unique(f.cells[f.cells > 0])) == f.n_live + f.n_dead


def _place_everywhere(shape, units, offsets, bound, margin, rng, gap):
    """`synthetic._place` as it was: each candidate checked against every cell placed."""
    dims = np.array(shape, float)
    centres = np.full((len(bound), 2), np.nan)
    placed_c, placed_r = np.empty((0, 2)), np.empty(0)
    for u, off in zip(units, offsets):
        lo, hi = margin[u][:, None], dims - 1 - margin[u][:, None]
        if (hi < lo).any():
            continue
        for _ in range(20):
            cand = rng.uniform(lo[0], hi[0], (64, 2))[:, None] + off
            ok = ((cand >= lo) & (cand <= hi)).all(axis=(1, 2))
            if len(placed_r):
                dist = np.linalg.norm(cand[:, :, None] - placed_c, axis=-1)
                ok &= (dist - bound[u][:, None] - placed_r >= gap).all(axis=(1, 2))
            if ok.any():
                centres[u] = cand[np.argmax(ok)]
                placed_c, placed_r = np.vstack([placed_c, centres[u]]), np.concatenate([placed_r, bound[u]])
                break
    return centres


@pytest.mark.parametrize("shape, n_cells, kwargs", [
    ((256, 256), 40, {"touching": 1.0}), ((128, 128), 200, {"cell_radius": (4, 4), "gap": -4}),
    ((256, 256), 200, {"gap": -9}), ((300, 260), 60, {"gap": 0}), ((64, 64), 12, {"cell_radius": (4, 30)}),
    ((200, 500), 150, {"touching": 0.5, "gap": 3.5}),
    ((128, 128), 400, {"cell_radius": (4, 60), "gap": -4}), ((64, 600), 400, {"cell_radius": (4, 60), "gap": 50}),
])
def test_placing_on_a_grid_places_as_checking_every_cell(monkeypatch, shape, n_cells, kwargs):
    # The grid only skips cells too far to matter: the same frames (4,000 cells on 4096²: 24 -> 8 s)
    import livedead_gpu.synthetic as synthetic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for seed in range(3):
            fast = make_frame(shape, n_cells, seed=seed, **kwargs)
            with monkeypatch.context() as m:
                m.setattr(synthetic, "_place", _place_everywhere)
                slow = make_frame(shape, n_cells, seed=seed, **kwargs)
            for name in ARRAYS:
                np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
