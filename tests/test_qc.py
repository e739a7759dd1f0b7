"""QC pictures: the four-panel view, the per-well GIF, the HTML report."""

import re

import numpy as np
import pytest
from matplotlib.image import imread
from PIL import Image

from livedead_gpu import CLASS_NAMES, qc, readout, segment_frame, synthetic

from _training_set import make_plate, write_training_set


@pytest.fixture(scope="module")
def frame():
    f = synthetic.make_frame((112, 112), n_cells=6, dead_fraction=0.5, seed=5)
    return f, segment_frame(f.brightfield, f.hoechst, f.draq7, intermediates=True)


def rgb_set(pixels):
    """Set of (r, g, b) ints of an (..., 3|4) image read back as floats in [0, 1] or uint8."""
    a = np.asarray(pixels)
    if a.dtype.kind == "f":
        a = np.rint(a * 255).astype(int)
    return {tuple(c) for c in a[..., :3].reshape(-1, 3)}


def test_class_colours_are_fixed_distinct_and_exported():
    assert qc.CLASS_COLORS.shape == (len(CLASS_NAMES), 3) and qc.CLASS_COLORS.dtype == np.uint8
    assert len({tuple(c) for c in qc.CLASS_COLORS}) == 5
    assert tuple(qc.CLASS_COLORS[0]) == (0, 0, 0)
    with pytest.raises(ValueError):
        qc.CLASS_COLORS[0, 0] = 1  # read-only: one definition


def test_colorize_classes():
    classes = np.arange(5, dtype=np.uint8).reshape(1, 5)
    assert (qc.colorize_classes(classes)[0] == qc.CLASS_COLORS).all()
    with pytest.raises(ValueError, match="values 0..4"):
        qc.colorize_classes(np.full((2, 2), 7, np.uint8))
    with pytest.raises(ValueError, match="2-D integer"):
        qc.colorize_classes(np.zeros((2, 2), np.float32))


def test_empty_fluorescence_stays_dark():
    rng = np.random.default_rng(0)
    noise = rng.normal(100, 3, (64, 64)).round().astype(np.uint16)
    stained = noise.copy()
    stained[20:30, 20:30] += 2000
    rgb = qc.fluorescence(stained, noise)
    assert rgb[..., 0].max() < 90           # Draq7 noise only: no bright red speckle
    assert rgb[25, 25, 2] > 230             # the Hoechst nucleus near full blue


def test_four_panel_png_size_and_class_colours(frame, tmp_path):
    f, r = frame
    path = qc.plot_result(f.brightfield, f.hoechst, f.draq7, r, tmp_path / "p.png", title="test frame")
    img = imread(path)
    assert img.shape[:2] == (1040, 1000)  # QC_FIGSIZE at 100 dpi
    # the class panel (lower right quadrant) shows every class in its exact colour
    quadrant = rgb_set(img[500:960, 500:])
    for value, colour in enumerate(qc.CLASS_COLORS):
        assert (r.classes == value).any()
        assert tuple(int(c) for c in colour) in quadrant, CLASS_NAMES[value]
    # the other panels are not painted in class colours (the composite is grey + stains)
    assert tuple(int(c) for c in qc.CLASS_COLORS[2]) not in rgb_set(img[:500, :500])


def test_four_panel_recomputes_the_gradient_and_counts(frame, tmp_path):
    f, r = frame
    path = qc.plot_frame(f.brightfield, f.hoechst, f.draq7, r.classes, tmp_path / "p.png", dpi=50)
    assert imread(path).shape[:2] == (520, 500)
    assert qc._count_nuclei(r.classes) == (r.n_live, r.n_dead)


def test_four_panel_refuses_mismatched_shapes(frame, tmp_path):
    f, r = frame
    with pytest.raises(ValueError, match="one shape"):
        qc.plot_frame(f.brightfield, f.hoechst, f.draq7[:-1], r.classes, tmp_path / "p.png")


def test_well_gif(tmp_path):
    frames = synthetic.make_timeseries((96, 96), n_cells=5, n_times=3, death_rate=0.5, seed=1)
    items = []
    for f in frames:
        r = segment_frame(f.brightfield, f.hoechst, f.draq7)
        items.append((f.time, f.brightfield, f.hoechst, f.draq7, r.classes, r.n_live, r.n_dead))
    path = qc.well_gif(items, tmp_path / "w.gif", title="A1 site 0")
    gif = Image.open(path)
    assert gif.n_frames == 3 and gif.info.get("loop") == 0
    # three tiles of 96 px scaled by 2, two 4-px gaps; a 20-px header
    assert gif.size == (3 * 192 + 8, 192 + 20)
    with pytest.raises(ValueError, match="at least one frame"):
        qc.well_gif([], tmp_path / "x.gif")


def test_select_frames_round_robin_last_time_first():
    rows = [{"well": w, "site": s, "time": t} for w in ("B1", "A1", "A2") for s in (0, 1) for t in range(3)]
    chosen = [(r["well"], r["site"], r["time"]) for r in qc.select_frames(rows, 7)]
    assert chosen == [("A1", 0, 2), ("A2", 0, 2), ("B1", 0, 2), ("A1", 0, 0), ("A2", 0, 0), ("B1", 0, 0),
                      ("A1", 0, 1)]
    assert len(qc.select_frames(rows, 100)) == len(rows)
    assert qc.select_frames(rows, 0) == []


def test_qc_training_set_and_report(tmp_path):
    root = tmp_path / "ts"
    write_training_set(root, make_plate(size=96, times=2, sites=1))
    res = qc.qc_training_set(root, n_frames=2)
    assert len(res["panels"]) == 2 and len(res["gifs"]) == 4
    assert all(p.is_file() for p in res["panels"] + res["gifs"])
    report = res["report"]
    assert report == root / "report.html"
    text = report.read_text()
    links = re.findall(r'(?:href|src)="([^"]+)"', text)
    for want in ("manifest.csv", "readout/kill_curves.png", "readout/plate_map.png", "readout/wells.csv"):
        assert want in links
    for link in links:
        assert (root / link).is_file(), link
    assert sum("qc/panels/" in link for link in links) >= 2 and sum(".gif" in link for link in links) == 4


@pytest.mark.parametrize("name", ["ts", "plate 10%FBS #3?"])
def test_qc_elsewhere_links_back(tmp_path, name):
    import html
    from urllib.parse import quote, unquote

    root = tmp_path / name
    write_training_set(root, make_plate(size=96, times=1, sites=1))
    res = qc.qc_training_set(root, tmp_path / "elsewhere", n_frames=1, gifs=False)
    text = res["report"].read_text()
    assert f'href="../{quote(name)}/manifest.csv"' in text
    assert res["gifs"] == []
    links = re.findall(r'(?:href|src)="([^"]+)"', text)
    assert len(links) >= 3
    for link in links:  # as a browser reads them: HTML entities, then the URL's quoting
        assert (tmp_path / "elsewhere" / unquote(html.unescape(link))).is_file(), link


def test_qc_bad_frames_name_the_row(tmp_path):
    root = tmp_path / "ts"
    write_training_set(root, make_plate(size=96, times=1, sites=1))
    rows = readout.read_manifest(root)
    (root / rows[0]["image"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"row A1 site 0 time 0: image file not found"):
        qc.qc_training_set(root, n_frames=1, gifs=False)
    import tifffile

    tifffile.imwrite(root / rows[0]["image"], np.zeros((2, 96, 96), np.uint16))
    with pytest.raises(ValueError, match=r"\(3, Y, X\).*got shape \(2, 96, 96\)"):
        qc.qc_training_set(root, n_frames=1, gifs=False)


def test_qc_corrupt_frame_file_names_it(tmp_path):
    root = tmp_path / "ts"
    write_training_set(root, make_plate(size=96, times=1, sites=1))
    rows = readout.read_manifest(root)
    path = root / rows[0]["classes"]
    path.write_bytes(path.read_bytes()[:300])           # truncated, as by a full disk
    with pytest.raises(ValueError, match=r"row A1 site 0 time 0: classes file .*A1.* is not a readable TIFF"):
        qc.qc_training_set(root, n_frames=1, gifs=False)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"row A1 site 0 time 0: classes file .*A1.* is not a readable TIFF"):
        qc.qc_training_set(root, n_frames=1, gifs=False)


def _colourful_series(n=2, size=64):
    """Frames whose composite is noise of every colour and whose rare classes cover 4 px each:
    Pillow's adaptive palette approximated those (class 4 [235, 30, 30] -> [100, 90, 91])."""
    rng = np.random.default_rng(1)
    items = []
    for t in range(n):
        bf, ho, d7 = (rng.integers(0, 4096, (size, size)).astype(np.uint16) for _ in range(3))
        classes = np.ones((size, size), np.uint8)
        classes[10:12, 10:12] = 2
        classes[20:22, 20:22] = 3
        classes[30:32, 30:32] = 4
        classes[40:43, 40:43] = 0
        items.append((t, bf, ho, d7, classes, 1, 1))
    return items


def test_well_gif_paints_the_classes_in_their_exact_colours(tmp_path):
    from PIL import ImageSequence

    items = _colourful_series()
    frames = synthetic.make_timeseries((96, 96), n_cells=5, n_times=2, death_rate=0.5, bit_depth=16, seed=2)
    for f in frames:
        r = segment_frame(f.brightfield, f.hoechst, f.draq7)
        items.append((f.time, f.brightfield, f.hoechst, f.draq7, r.classes, r.n_live, r.n_dead))
    for name, series in (("noise", items[:2]), ("cells", items[2:])):
        gif = Image.open(qc.well_gif(series, tmp_path / f"{name}.gif"))
        read = [np.asarray(fr.convert("RGB")) for fr in ImageSequence.Iterator(gif)]
        assert len(read) == len(series)
        for rgb, item in zip(read, series):
            want = qc._fit(qc.colorize_classes(item[4]), qc.GIF_TILE)
            side = want.shape[1]
            got = rgb[20:20 + want.shape[0], rgb.shape[1] - side:]
            assert (got == want).all(), f"{name}: {np.unique(got[(got != want).any(-1)], axis=0)[:3]}"
            # the composite still looks like itself (quantised to the palette's other 251 entries)
            lim = {k: qc.channel_limits([i[j] for i in series], kind)
                   for k, j, kind in (("brightfield", 1, "brightfield"), ("hoechst", 2, "fluorescence"),
                                      ("draq7", 3, "fluorescence"))}
            comp = qc._fit(qc.composite(*item[1:4], lim), qc.GIF_TILE).astype(int)
            assert np.abs(rgb[20:20 + side, :side].astype(int) - comp).mean() < 12


def test_well_gif_refuses_frames_of_other_shapes(tmp_path):
    items = _colourful_series(3)
    t, bf, ho, d7, classes, *n = items[2]
    items[2] = (t, bf[:-1], ho[:-1], d7[:-1], classes[:-1], *n)
    with pytest.raises(ValueError, match=r"frame 2 \(time 2\) has shape \(63, 64\), frame 0 \(64, 64\)"):
        qc.well_gif(items, tmp_path / "w.gif")
    items[2] = (t, bf, ho, d7[:-1], classes, *n)
    with pytest.raises(ValueError, match=r"frame 2 .*one shape, got \(64, 64\), \(64, 64\), \(63, 64\), \(64, 64\)"):
        qc.well_gif(items, tmp_path / "w.gif")
    assert not any(tmp_path.iterdir())


def test_well_gif_is_written_atomically(tmp_path, monkeypatch):
    calls = []

    def recording(path, write):
        calls.append(path)
        return atomic_write(path, write)

    from livedead_gpu.io import atomic_write

    monkeypatch.setattr(qc, "atomic_write", recording)
    path = qc.well_gif(_colourful_series(), tmp_path / "w.gif")
    assert calls == [tmp_path / "w.gif"] and [p.name for p in tmp_path.iterdir()] == ["w.gif"]
    assert Image.open(path).n_frames == 2


def _captured_colour_bar(monkeypatch):
    captured = {}
    save = qc._save
    monkeypatch.setattr(qc, "_save", lambda fig, path: (captured.update(fig=fig), save(fig, path))[1])
    return lambda: captured["fig"].axes[4]   # the latest figure's gradient colour bar


def test_block_max_gradient_threshold_is_marked_on_the_gradient_scale(tmp_path, monkeypatch):
    # thresholds["gradient"] of "block-max" counts levels of gradient / gradient_scale: it was
    # drawn at 74 on a bar up to 16,400 (98.6 % of pixels over it against 19.8 % cell area)
    from livedead_gpu import SegmentParams

    f = synthetic.make_frame((128, 128), n_cells=8, bit_depth=16, seed=0)
    r = segment_frame(f.brightfield, f.hoechst, f.draq7, SegmentParams(cell_threshold="block-max"),
                      intermediates=True)
    th, scale, g = r.thresholds["gradient"], r.thresholds["gradient_scale"], r.intermediates["gradient"]
    assert scale > 2
    bar = _captured_colour_bar(monkeypatch)
    qc.plot_result(f.brightfield, f.hoechst, f.draq7, r, tmp_path / "p.png", dpi=30)
    (line,) = bar().lines
    at = line.get_ydata()[0]
    assert at == pytest.approx((th + 1) * scale)
    assert ((g >= at) == (np.floor(g / scale) > th)).mean() > 0.999   # the line is the cell area's edge
    # "noise": the threshold is on the gradient's own scale, drawn as given
    r = segment_frame(f.brightfield, f.hoechst, f.draq7, intermediates=True)
    assert r.thresholds["gradient_scale"] is None
    qc.plot_result(f.brightfield, f.hoechst, f.draq7, r, tmp_path / "q.png", dpi=30)
    assert bar().lines[0].get_ydata()[0] == pytest.approx(r.thresholds["gradient"])


@pytest.mark.parametrize("margin", [0, 80])
def test_qc_marks_a_block_max_threshold_with_its_scale(tmp_path, monkeypatch, margin):
    # margin: registration padding, which segment_frame sets aside before it measures the scale
    # (the QC scale had been of the whole frame: 34.4 for 32.0 beside a 150-px margin)
    import csv
    import dataclasses

    from livedead_gpu import SegmentParams

    root = tmp_path / "ts"
    plate = synthetic.make_plate(wells=("A1",), n_times=1, shape=(192, 192), n_cells=20, bit_depth=16, seed=4)
    for key, f in plate.items():
        padded = {}
        for c in ("brightfield", "hoechst", "draq7"):
            padded[c] = getattr(f, c).copy()
            padded[c][:, :margin] = 0
        plate[key] = dataclasses.replace(f, **padded)
    write_training_set(root, plate)
    params = SegmentParams.from_preset("article", gradient_levels=1024)
    (root / "params.toml").write_text(params.to_toml())
    (frame,) = plate.values()
    r = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params)
    with (root / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["thr_gradient"] = r.thresholds["gradient"]
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, rows[0].keys())
        w.writeheader()
        w.writerows(rows)
    seen = {}
    plot = qc.plot_frame
    monkeypatch.setattr(qc, "plot_frame", lambda *a, **k: (seen.update(k), plot(*a, **k))[1])
    qc.qc_training_set(root, tmp_path / "out", n_frames=1, gifs=False)
    assert r.thresholds["gradient_scale"] > 2
    assert seen["gradient_threshold"] == r.thresholds["gradient"]
    assert seen["gradient_scale"] == pytest.approx(r.thresholds["gradient_scale"], rel=1e-6)


def test_qc_well_names_write_no_file_outside_the_qc_folders(tmp_path):
    # a well named "../../../ESCAPED" wrote its panel and GIF three folders up
    import csv
    import html
    from urllib.parse import unquote

    root = tmp_path / "ts"
    write_training_set(root, make_plate(size=64, times=1, sites=1))
    with (root / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = ["../../../ESCAPED", "B/1", "B_1", ".hidden"]
    for row, name in zip(rows, names):
        row["well"] = name
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, rows[0].keys())
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "a" / "b" / "out"
    res = qc.qc_training_set(root, out, n_frames=4)
    files = {p.relative_to(out).as_posix() for p in tmp_path.rglob("*") if p.is_file()
             and root not in p.parents}
    assert all(not f.startswith("..") for f in files)
    assert {p.parent for p in res["gifs"]} == {out / "qc" / "gifs"} and len(set(res["gifs"])) == 4
    assert {p.parent for p in res["panels"]} == {out / "qc" / "panels"} and len(set(res["panels"])) == 4
    assert not any(p.name.startswith(".") for p in res["gifs"] + res["panels"])
    text = res["report"].read_text()
    links = re.findall(r'(?:href|src)="([^"]+)"', text)
    for link in links:
        assert (out / unquote(html.unescape(link))).is_file(), link
    for name in names:
        assert html.escape(name) in text    # the captions keep the wells' names


def test_float_fluorescence_in_0_1_is_scaled_as_its_counts():
    # the noise s.d. was floored at 1 grey level: a [0, 1] image ran up to 20 and showed black
    rng = np.random.default_rng(0)
    counts = rng.normal(200, 3, (64, 64)).astype(np.uint16)
    counts[20:30, 20:30] += 3000
    floats = counts.astype(np.float32) / 65535
    lo, hi = qc.channel_limits(floats)
    assert (lo * 65535, hi * 65535) == pytest.approx(qc.channel_limits(counts), rel=1e-3)
    dark = np.zeros_like(floats)
    assert qc.fluorescence(floats, dark)[25, 25, 2] == qc.fluorescence(counts, dark.astype(np.uint16))[25, 25, 2]
    assert qc.channel_limits(dark) == (0.0, 1e-6)          # all zero: dark, no division by zero


def test_panel_names_are_the_frames_file_stems_where_they_can_be():
    # frame_stem's int() had named times 1 and 1.5 alike (A1_s00_t0001, then "-2" for the second)
    from livedead_gpu.qc import _frame_name

    names = [_frame_name({"well": "A1", "site": 0, "time": t}) for t in (1, 1.5, -1, "2", 3.0)]
    assert names == ["A1_s00_t0001", "A1_s0_t1.5", "A1_s0_t-1", "A1_s00_t0002", "A1_s00_t0003"]
