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
