"""The live/dead readout: per frame, per well over time, from a FrameResult or a manifest; the plots."""

import csv
import math

import numpy as np
import pytest
from matplotlib.image import imread

from livedead_gpu import readout, segment_frame, synthetic

from _training_set import MANIFEST_COLUMNS, make_plate, write_training_set


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    plate = write_training_set(root, make_plate())
    return root, plate


def close(found, truth):
    return abs(found - truth) <= max(1, 0.1 * truth)


def test_frame_readout_matches_ground_truth():
    f = synthetic.make_frame((128, 128), n_cells=6, dead_fraction=0.5, seed=2)
    r = segment_frame(f.brightfield, f.hoechst, f.draq7)
    row = readout.frame_readout(r, "C4", 1, 7)
    assert list(row) == list(readout.FRAME_COLUMNS)
    assert (row["well"], row["site"], row["time"]) == ("C4", 1, 7)
    assert close(row["n_live"], f.n_live) and close(row["n_dead"], f.n_dead)
    assert row["dead_fraction"] == pytest.approx(row["n_dead"] / (row["n_live"] + row["n_dead"]))
    assert row["cell_fraction"] == pytest.approx(np.count_nonzero(r.classes) / r.classes.size)
    # the found cell edge lies a pixel or two outside the drawn one (smoothing, halo): within 50 %
    truth = np.count_nonzero(f.classes) / f.classes.size
    assert truth <= row["cell_fraction"] < 1.5 * truth


def test_frame_readout_refuses_other_things():
    with pytest.raises(TypeError, match="FrameResult"):
        readout.frame_readout(np.zeros((4, 4)))


def test_dead_fraction_without_nuclei_is_nan():
    assert math.isnan(readout.dead_fraction(0, 0))
    assert readout.dead_fraction(3, 1) == 0.25


def test_manifest_readout_per_frame_against_truth(training_set):
    root, plate = training_set
    rows = readout.manifest_readout(root / "manifest.csv")
    assert len(rows) == len(plate)
    for row in rows:
        truth = plate[(row["well"], row["site"], row["time"])]
        assert close(row["n_live"], truth.n_live), row
        assert close(row["n_dead"], truth.n_dead), row
        assert 0.1 < row["cell_fraction"] < 0.7


def test_cell_fraction_from_the_mask_when_fractions_are_absent(training_set, tmp_path):
    root, _ = training_set
    rows = readout.read_manifest(root)
    for r in rows:
        for c in ("frac_background", "frac_cell"):
            r.pop(c)
    from_mask = readout.manifest_readout(rows, root)
    from_columns = readout.manifest_readout(root)
    for a, b in zip(from_mask, from_columns):
        assert a["cell_fraction"] == pytest.approx(b["cell_fraction"], abs=1e-5)


def test_well_readout_sums_sites(training_set):
    root, plate = training_set
    wells = readout.well_readout(readout.manifest_readout(root))
    assert [r["well"] for r in wells[::3]] == ["A1", "A2", "B1", "B3"]
    for r in wells:
        frames = [f for (w, _, t), f in plate.items() if w == r["well"] and t == r["time"]]
        assert r["n_sites"] == len(frames) == 2
        true_live = sum(f.n_live for f in frames)
        true_dead = sum(f.n_dead for f in frames)
        assert close(r["n_live"], true_live) and close(r["n_dead"], true_dead)
        assert r["dead_fraction"] == pytest.approx(r["n_dead"] / (r["n_live"] + r["n_dead"]))
    # the dose series: the last well dies most
    last = {r["well"]: r["dead_fraction"] for r in wells if r["time"] == 2}
    assert last["B3"] > last["A1"]


def test_well_readout_recomputes_the_fraction_from_summed_counts():
    rows = [
        {"well": "A1", "site": 0, "time": 0, "n_live": 9, "n_dead": 1, "cell_fraction": 0.2},
        {"well": "A1", "site": 1, "time": 0, "n_live": 0, "n_dead": 10, "cell_fraction": 0.4},
    ]
    (r,) = readout.well_readout(rows)
    assert (r["n_live"], r["n_dead"], r["n_sites"]) == (9, 11, 2)
    assert r["dead_fraction"] == pytest.approx(11 / 20)  # not the mean of 0.1 and 1.0
    assert r["cell_fraction"] == pytest.approx(0.3)


def test_a_time_point_missing_a_site_is_flagged_and_left_out_of_the_plots(tmp_path):
    # Site 2 of A2 at t3 was skipped: the pooled fraction there, of site 1 alone, bent the
    # curve (0.12, 0.08, 0.32) without a sign in the plots.
    rows = [{"well": "A2", "site": s, "time": t, "n_live": 10, "n_dead": t * (1 + 3 * s), "cell_fraction": 0.2}
            for t in range(5) for s in (1, 2) if (t, s) != (3, 2)]
    wells = readout.well_readout(iter(rows))
    assert [r["sites_missing"] for r in wells] == [0, 0, 0, 1, 0]
    assert [r["n_sites"] for r in wells] == [2, 2, 2, 1, 2]
    t, f = readout._series(wells)["A2"]
    assert np.isnan(f[3]) and np.isfinite(np.delete(f, 3)).all()


def test_a_time_point_missing_every_site_of_a_well_is_a_gap():
    # B1's one site was skipped at t2: it had no row there, and its curve joined t1 to t3.
    rows = [{"well": w, "site": 0, "time": t, "n_live": 10, "n_dead": t, "cell_fraction": 0.2}
            for w in ("A1", "B1") for t in range(5) if (w, t) != ("B1", 2)]
    rows += [{"well": "C1", "site": 0, "time": t, "n_live": 5, "n_dead": 1, "cell_fraction": 0.1} for t in (0, 1)]
    wells = readout.well_readout(rows)
    b1 = [r for r in wells if r["well"] == "B1"]
    assert [r["time"] for r in b1] == [0, 1, 2, 3, 4]
    assert (b1[2]["n_sites"], b1[2]["sites_missing"], b1[2]["n_live"]) == (0, 1, 0)
    assert math.isnan(b1[2]["dead_fraction"]) and math.isnan(b1[2]["cell_fraction"])
    t, f = readout._series(wells)["B1"]
    assert np.isnan(f[2]) and np.isfinite(np.delete(f, 2)).all()
    # a well imaged over fewer time points is not padded past its last
    assert [r["time"] for r in wells if r["well"] == "C1"] == [0, 1]


def _red(path):
    rgb = imread(path)[..., :3]
    return int(((rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum())


def test_plate_map_of_one_time_point_and_of_a_gap(tmp_path, monkeypatch):
    # An endpoint plate (one time point) drew nothing in any panel; a frame without nuclei was
    # shaded as 0 % dead; the title was cut off on plates one or two columns wide.
    one = [{"well": w, "time": 0, "dead_fraction": f} for w, f in (("A1", 0.9), ("B1", 0.95))]
    none = [dict(r, dead_fraction=math.nan) for r in one]   # the same figure, its colour bar, no data
    assert _red(readout.plot_plate_map(one, tmp_path / "one.png")) > \
        _red(readout.plot_plate_map(none, tmp_path / "none.png")) + 10
    from matplotlib.axes import Axes

    fills = []
    original = Axes.fill_between

    def record(self, x, y1, y2=0, where=None, **kw):
        fills.append((np.asarray(y2), where))
        return original(self, x, y1, y2, where=where, **kw)

    monkeypatch.setattr(Axes, "fill_between", record)
    gap = [{"well": "A1", "time": t, "dead_fraction": f} for t, f in enumerate((0.9, 0.9, math.nan, 0.9, 0.9))]
    readout.plot_plate_map(gap, tmp_path / "gap.png")
    (y2, where), = fills
    assert list(where) == [True, True, False, True, True]   # shaded where there are data only
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    title = fig.suptitle("Plate map: dead fraction (0-1) vs time point (0-0), per well", fontsize=11)
    width = title.get_window_extent(FigureCanvasAgg(fig).get_renderer()).width / fig.dpi
    assert imread(tmp_path / "one.png").shape[1] / 100 > width   # 1 column: 2.9 in, the title 4.2


def test_two_spellings_of_one_well_stay_apart(tmp_path):
    # "A1" and "A01": wells.csv interleaved their rows, the plate map drew both in one panel
    rows = [{"well": w, "site": 0, "time": t, "n_live": 5, "n_dead": t, "cell_fraction": 0.2}
            for w in ("A01", "A1") for t in range(3)]
    wells = readout.well_readout(rows)
    assert [r["well"] for r in wells] == ["A01"] * 3 + ["A1"] * 3
    with pytest.warns(UserWarning, match="wells A01 and A1 name one plate position"):
        readout.plot_plate_map(wells, tmp_path / "m.png")


def test_parse_well():
    assert readout.parse_well("A1") == (0, 1)
    assert readout.parse_well("h12") == (7, 12)
    assert readout.parse_well("B03") == (1, 3)
    assert readout.parse_well("AF48") == (31, 48)
    assert readout.parse_well("position3") is None
    # names that are no position of a 1536-well plate: "WT1" was row 617, a plate map of
    # 618 x 1 panels (10 minutes); "A0" column 0, drawn in the last column's panel
    for name in ("WT1", "KO2", "AG1", "A0", "A49"):
        assert readout.parse_well(name) is None, name


def write_manifest(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


GOOD = ["well", "site", "time", "n_live", "n_dead", "frac_background"]


@pytest.mark.parametrize("header, rows, match", [
    (["well", "site", "time", "n_live"], [["A1", 0, 0, 3]], r"missing column\(s\) n_dead"),
    (GOOD, [], "no frames"),
    (GOOD, [["A1", 0, 0, "three", 1, 0.5]], r"line 2: n_live must be an integer >= 0, got 'three'"),
    (GOOD, [["A1", 0, 0, 3, -1, 0.5]], "n_dead must be an integer >= 0"),
    (GOOD, [["A1", 0.5, 0, 3, 1, 0.5]], "site must be an integer"),
    (GOOD, [["A1", 0, "", 3, 1, 0.5]], "time must be a number"),
    (GOOD, [["A1", 0, 0, 3, 1, 0.5], ["A1", 0, 0, 2, 2, 0.5]], "line 3: well A1 site 0 time 0 already given"),
    (GOOD, [["A1", 0, 0, 3, 1]], "line 2: expected 6 fields"),
    (GOOD, [["", 0, 0, 3, 1, 0.5]], "well is empty"),
])
def test_malformed_manifests_name_the_problem(tmp_path, header, rows, match):
    write_manifest(tmp_path / "manifest.csv", header, rows)
    with pytest.raises(ValueError, match=match):
        readout.read_manifest(tmp_path)


def test_missing_manifest_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.csv in"):
        readout.read_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        readout.read_manifest(tmp_path / "other.csv")
    with pytest.raises(FileNotFoundError, match="training-set folder not found"):
        readout.readout_training_set(tmp_path / "nope")


def test_binary_manifest_is_a_value_error(tmp_path):
    (tmp_path / "manifest.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ValueError, match="not a CSV"):
        readout.read_manifest(tmp_path)


def test_non_integral_times_are_kept(tmp_path):
    write_manifest(tmp_path / "manifest.csv", GOOD, [["A1", 0, 0.5, 3, 1, 0.5], ["A1", 0, 2, 1, 3, 0.5]])
    rows = readout.read_manifest(tmp_path)
    assert [r["time"] for r in rows] == [0.5, 2]


def test_write_readout_files(training_set, tmp_path):
    root, _ = training_set
    paths = readout.write_readout(readout.manifest_readout(root), tmp_path / "r")
    assert set(paths) == {"frames", "wells", "kill_curves", "plate_map"}
    with paths["wells"].open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == readout.WELL_COLUMNS
        assert len(list(reader)) == 4 * 3
    with paths["frames"].open() as fh:
        assert tuple(csv.DictReader(fh).fieldnames) == readout.FRAME_COLUMNS
    kill = imread(paths["kill_curves"])
    assert kill.shape[:2] == (500, 800)
    assert imread(paths["plate_map"]).ndim == 3
    assert not list(tmp_path.rglob("*.part"))


def test_kill_curves_one_line_per_well_colour(tmp_path):
    rows = [{"well": w, "time": t, "dead_fraction": f}
            for w, fs in (("A1", (0, 0.1, 0.2)), ("B2", (0, 0.5, 0.9))) for t, f in enumerate(fs)]
    path = readout.plot_kill_curves(rows, tmp_path / "k.png")
    rgb = (imread(path)[..., :3] * 255).round().astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in rgb}
    # tab10's first two colours, one per well
    assert (31, 119, 180) in colours and (255, 127, 14) in colours


def test_plots_refuse_no_rows(tmp_path):
    with pytest.raises(ValueError, match="no readout rows"):
        readout.plot_kill_curves([], tmp_path / "k.png")


def test_write_readout_of_no_rows_writes_nothing(tmp_path):
    # frames.csv and wells.csv were written, then the kill-curve plot refused the empty rows
    with pytest.raises(ValueError, match="no readout rows"):
        readout.write_readout([], tmp_path / "r")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_write_readout_of_an_iterator(tmp_path):
    rows = [{"well": "A1", "site": 0, "time": t, "n_live": 3, "n_dead": t, "dead_fraction": t / (3 + t),
             "cell_fraction": 0.2} for t in range(3)]
    paths = readout.write_readout(iter(rows), tmp_path / "r")   # frames.csv came out header-only
    with paths["frames"].open() as fh:
        assert len(list(csv.DictReader(fh))) == 3


def test_plate_map_of_unplaced_wells(tmp_path):
    rows = [{"well": w, "time": t, "dead_fraction": 0.1 * t} for w in ("pos1", "pos2", "pos3") for t in range(3)]
    path = readout.plot_plate_map(rows, tmp_path / "m.png")
    assert imread(path).ndim == 3


def test_manifest_columns_of_the_helper_match_the_export():
    from livedead_gpu.io.training import MANIFEST_COLUMNS as EXPORT

    assert set(MANIFEST_COLUMNS) <= set(EXPORT)
