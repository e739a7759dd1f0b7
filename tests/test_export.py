"""Training-set export: files, metadata, manifest, split, weights, patches, resume, errors, CLI."""

import csv
import dataclasses
import fcntl
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from test_io_plate import GEN5_NAMES, small_plate, write_gen5, write_stacks

from livedead_gpu import SegmentParams, get_backend, segment_frame, synthetic
from livedead_gpu.export import export_plate, extract_patches, plate_bleed, split_wells, unet_weights
from livedead_gpu.io import MANIFEST_COLUMNS, PlateError, open_plate, open_training_set, read_manifest

# small synthetic frames cannot always place every cell; that is fine here
pytestmark = pytest.mark.filterwarnings("ignore:placed .* cells:UserWarning")
REQUIRED = ["well", "site", "time", "image", "classes", "cells", "weights", "params_hash", "n_live",
            "n_dead", "dead_fraction", "frac_background", "frac_cell", "frac_outline", "frac_hoechst",
            "frac_draq7", "thr_gradient", "thr_hoechst", "thr_draq7", "hoechst_smoothing", "split"]


@pytest.fixture(scope="module")
def plate():
    return small_plate(wells=("B2", "C3"), n_times=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, plate):
    root = tmp_path_factory.mktemp("exp")
    src = write_gen5(root / "plate", plate, pixel_size=0.65)
    summary = export_plate(src, root / "out", weights=True)
    return src, root / "out", summary


def test_manifest_has_the_columns_and_one_row_per_frame(exported):
    src, out, summary = exported
    assert summary.frames == 4 and len(summary.written) == 4 and not summary.failed
    rows = read_manifest(out)
    assert set(REQUIRED) <= set(MANIFEST_COLUMNS) == set(rows[0])
    assert [(r["well"], r["site"], r["time"]) for r in rows] == [
        ("B2", "1", "1"), ("B2", "1", "2"), ("C3", "1", "1"), ("C3", "1", "2")]
    # bleed="auto" is measured once for the plate, and that number is the run's parameter
    assert summary.bleed is not None and 0 <= summary.bleed <= 0.1
    assert SegmentParams.from_toml(out / "params.toml") == SegmentParams(bleed=summary.bleed)
    assert not list(out.rglob("*.part"))


def test_written_frames_match_segment_frame(exported, plate):
    src, out, summary = exported
    p = open_plate(src)
    params = SegmentParams(bleed=summary.bleed)
    for row in read_manifest(out):
        frame = p.read((row["well"], int(row["site"]), int(row["time"])))
        r = segment_frame(frame.brightfield, frame.hoechst, frame.draq7, params)
        image = tifffile.imread(out / row["image"])
        assert image.shape == (3, 64, 64) and image.dtype == np.uint16
        np.testing.assert_array_equal(image, frame.stack())
        classes = tifffile.imread(out / row["classes"])
        assert classes.dtype == np.uint8
        np.testing.assert_array_equal(classes, r.classes)
        cells = tifffile.imread(out / row["cells"])
        assert cells.dtype == np.int32
        np.testing.assert_array_equal(cells, r.cells)
        weights = tifffile.imread(out / row["weights"])
        assert weights.dtype == np.float32
        np.testing.assert_allclose(weights, unet_weights(r.classes, r.cells), rtol=1e-6)

        assert row["params_hash"] == params.digest()
        assert (int(row["n_live"]), int(row["n_dead"])) == (r.n_live, r.n_dead)
        n = r.n_live + r.n_dead
        assert (float(row["dead_fraction"]) == pytest.approx(r.n_dead / n, abs=1e-6)) if n else row["dead_fraction"] == ""
        fracs = np.bincount(r.classes.ravel(), minlength=5) / r.classes.size
        for name, f in zip(("background", "cell", "outline", "hoechst", "draq7"), fracs):
            assert float(row[f"frac_{name}"]) == pytest.approx(f, abs=1e-6)
        assert float(row["thr_gradient"]) == pytest.approx(r.thresholds["gradient"], rel=1e-6)
        assert float(row["thr_hoechst"]) == pytest.approx(r.thresholds["hoechst"], rel=1e-6)
        assert float(row["hoechst_smoothing"]) == r.thresholds["hoechst_smoothing"]
        if r.thresholds["draq7"] is None:  # the Draq7-ratio dead call thresholds no Draq7 mask
            assert row["thr_draq7"] == ""
        else:
            assert float(row["thr_draq7"]) == pytest.approx(r.thresholds["draq7"], rel=1e-6)
        assert float(row["bleed"]) == pytest.approx(r.thresholds["bleed"], rel=1e-6)
        assert row["channels"] == "Bright Field|DAPI|Cy5"
        assert float(row["pixel_size"]) == pytest.approx(0.65)
        assert "DAPI" in row["source"]


def test_tiff_metadata_for_fiji_and_napari(exported):
    _, out, _ = exported
    row = read_manifest(out)[0]
    with tifffile.TiffFile(out / row["image"]) as t:
        assert t.is_imagej and t.series[0].axes == "CYX"
        assert t.imagej_metadata["Labels"] == ["brightfield", "hoechst", "draq7"]
        assert t.imagej_metadata["unit"] == "um"
        num, den = t.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.65, rel=1e-6)
        assert t.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    with tifffile.TiffFile(out / row["classes"]) as t:
        assert t.is_imagej and t.imagej_metadata["Labels"] in ("classes", ["classes"])
        assert "4 draq7" in t.imagej_metadata["Info"]
    with tifffile.TiffFile(out / row["cells"]) as t:
        assert t.is_ome and t.series[0].dtype == np.int32
        pixels = tifffile.xml2dict(t.ome_metadata)["OME"]["Image"]["Pixels"]
        assert pixels["PhysicalSizeX"] == pytest.approx(0.65)
        assert pixels["Channel"]["Name"] == "cells"
    with tifffile.TiffFile(out / row["weights"]) as t:
        assert t.is_imagej and t.series[0].dtype == np.float32


def test_open_training_set(exported):
    _, out, _ = exported
    ts = open_training_set(out)
    assert len(ts) == 4
    image, mask, weights = ts[0]
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64) and weights.dtype == np.float32
    assert len(list(ts)) == 4
    assert ts.cells(0).dtype == np.int32
    assert all(len(item) == 2 for item in open_training_set(out, weights=False))
    split = ts.rows[0]["split"]
    assert {r["split"] for r in open_training_set(out, split=split).rows} == {split}


def test_split_is_by_well_and_deterministic(tmp_path):
    wells = [f"{r}{c}" for r in "ABC" for c in (1, 2)]
    a = split_wells(wells, seed=3)
    assert a == split_wells(list(reversed(wells)), seed=3)
    assert sorted(a.values()).count("train") == 4 and list(a.values()).count("val") == 1
    assert any(split_wells(wells, seed=s) != a for s in range(5))
    assert set(split_wells(wells, (1, 0, 0)).values()) == {"train"}
    with pytest.raises(ValueError, match="summing to 1"):
        split_wells(wells, (0.5, 0.2, 0.2))

    plate = small_plate(wells=tuple(wells), n_times=2, size=64)
    src = write_stacks(tmp_path / "st", plate)
    export_plate(src, tmp_path / "out", seed=3)
    rows = read_manifest(tmp_path / "out")
    by_well = {}
    for r in rows:
        by_well.setdefault(r["well"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_well.values())
    assert {w: s.pop() for w, s in by_well.items()} == a


def _loop_weights(classes, cells, w0=10.0, sigma=5.0):
    """Eq. 2 of Ronneberger et al. 2015, pixel by pixel."""
    counts = {k: np.count_nonzero(classes == k) for k in np.unique(classes)}
    ids = [i for i in np.unique(cells) if i]
    pts = {i: np.argwhere(cells == i) for i in ids}
    w = np.zeros(classes.shape)
    for y in range(classes.shape[0]):
        for x in range(classes.shape[1]):
            w[y, x] = classes.size / (len(counts) * counts[classes[y, x]])
            if cells[y, x] == 0 and len(ids) >= 2:
                d = sorted(np.sqrt(((pts[i] - (y, x)) ** 2).sum(1)).min() for i in ids)
                w[y, x] += w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2))
    return w


def test_weights_match_the_formula_on_a_small_case():
    cells = np.zeros((20, 26), np.int32)
    cells[2:8, 3:10] = 1
    cells[2:9, 11:15] = 2          # one-pixel gap to cell 1
    cells[13:18, 5:22] = 3
    cells[15:17, 24:26] = 4         # at the image edge
    classes = (cells > 0).astype(np.uint8)
    classes[4:6, 5:7] = 3
    classes[14:16, 8:10] = 4
    classes[cells == 0] = 0
    classes[1, 1] = 2
    got = unet_weights(classes, cells)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _loop_weights(classes, cells), rtol=1e-5, atol=1e-5)
    assert got[5, 10] > 9      # the gap between cells 1 and 2: d1 + d2 = 2, 10 exp(-4/50) = 9.2
    np.testing.assert_allclose(unet_weights(classes, cells, w0=0).mean(), 1.0, rtol=1e-6)
    one = np.where(cells == 1, 1, 0).astype(np.int32)   # one cell: class balance only
    np.testing.assert_allclose(unet_weights(classes, one), _loop_weights(classes, one), rtol=1e-6)
    # int64 classes in Fortran order (a transposed frame's): the same weights
    fortran = unet_weights(np.asfortranarray(classes.astype(np.int64)), np.asfortranarray(cells))
    np.testing.assert_allclose(fortran, _loop_weights(classes, cells), rtol=1e-5, atol=1e-5)


def test_patches(tmp_path, plate):
    from livedead_gpu.io.plate import _pixel_size

    src = write_gen5(tmp_path / "plate", plate, pixel_size=0.65)
    summary = export_plate(src, tmp_path / "out", weights=True, patches=(32, 0.1))
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "patches.csv").open()))
    for kind in ("image", "classes", "weights"):  # the pixel size in a unit readers know (not per inch)
        with tifffile.TiffFile(out / rows[0][kind]) as tif:
            assert tif.pages.first.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            assert _pixel_size(tif) == pytest.approx(0.65)
    frames = {(r["well"], r["site"], r["time"]): r for r in read_manifest(out)}
    assert sum(int(r["n_patches"]) for r in frames.values()) == len(rows) > 0
    ts = open_training_set(out, patches=True)
    assert len(ts) == len(rows)
    for row, (image, mask, weights) in zip(rows, ts):
        f = frames[(row["well"], row["site"], row["time"])]
        y, x = int(row["y"]), int(row["x"])
        sl = (slice(y, y + 32), slice(x, x + 32))
        full = tifffile.imread(out / f["classes"])
        np.testing.assert_array_equal(mask, full[sl])
        np.testing.assert_array_equal(image, tifffile.imread(out / f["image"])[(slice(None),) + sl])
        np.testing.assert_array_equal(weights, tifffile.imread(out / f["weights"])[sl])
        assert np.count_nonzero(mask) / mask.size >= 0.1
        assert float(row["frac_foreground"]) == pytest.approx(np.count_nonzero(mask) / mask.size, abs=1e-6)
        assert row["split"] == f["split"]
    assert summary.done == 4
    # the selection rule itself
    classes = np.zeros((70, 100), np.uint8)
    classes[0:32, 32:64] = 1
    classes[40:50, 0:10] = 1
    assert extract_patches(classes, 32, 0.05) == [(0, 32, 1.0), (32, 0, 100 / 1024)]
    assert extract_patches(classes, 32, 0.5) == [(0, 32, 1.0)]


def _mtimes(out):
    return {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*.tif")}


def test_resume_skips_done_frames_and_redoes_changed_ones(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    first = export_plate(src, out)
    manifest = (out / "manifest.csv").read_bytes()
    before = _mtimes(out)

    again = export_plate(src, out)
    assert len(again.resumed) == 4 and not again.written
    assert _mtimes(out) == before and (out / "manifest.csv").read_bytes() == manifest

    # a frame whose file went missing, and one whose source changed, are redone
    (out / "classes" / "B2_s01_t0001.tif").unlink()
    os.utime(src / "C3_02_2_1_DAPI_002.tif", ns=(1, 1))
    third = export_plate(src, out)
    assert sorted(third.written) == sorted([first.written[0], first.written[3]])
    assert (out / "manifest.csv").read_bytes() == manifest

    # other parameters: everything redone, the manifest says so
    params = SegmentParams(min_nucleus_area=5)
    fourth = export_plate(src, out, params=params)
    assert len(fourth.written) == 4
    params = SegmentParams(min_nucleus_area=5, bleed=fourth.bleed)   # "auto" measured for the plate
    rows = read_manifest(out)
    assert {r["params_hash"] for r in rows} == {params.digest()} != {SegmentParams().digest()}
    assert SegmentParams.from_toml(out / "params.toml") == params
    # and asking for weights now redoes the frames to add them
    fifth = export_plate(src, out, params=params, weights=True, patches=(32, 0.1))
    assert len(fifth.written) == 4 and all(r["weights"] for r in read_manifest(out))
    assert list((out / "weights").glob("*.tif")) and list((out / "patches").glob("*.tif"))
    # and without them again: the frames are redone and their old weight maps and patches go
    export_plate(src, out, params=params, resume=False)
    assert not any(r["weights"] for r in read_manifest(out))
    assert not list((out / "weights").glob("*.tif")) and not list((out / "patches").glob("*.tif"))


def test_a_stack_of_focal_planes_exports_the_plane_asked_for_and_resumes_by_it(tmp_path, plate):
    one = {k: f for k, f in plate.items() if k[:2] == ("B2", 0)}
    roles = ("brightfield", "hoechst", "draq7")
    # plane 1 the plate's frames, plane 0 a blur of them: another frame to segment
    tczyx = np.stack([np.stack([np.stack([getattr(f, r) // 2, getattr(f, r)]) for r in roles])
                      for _, f in sorted(one.items())])
    src = tmp_path / "plate"
    src.mkdir()
    tifffile.imwrite(src / "B2_s0.ome.tif", tczyx, ome=True,
                     metadata={"axes": "TCZYX", "Channel": {"Name": ["Bright Field", "DAPI", "Cy5"]}})
    out = tmp_path / "out"
    assert cli("segment", str(src), "-o", str(out), "--z", "1").returncode == 0
    first = export_plate(src, out, z=1)
    assert len(first.resumed) == len(one) and not first.written
    for (well, site, t), f in one.items():
        written = tifffile.imread(out / "images" / f"{well}_s{site:02d}_t{t:04d}.tif")
        np.testing.assert_array_equal(written, np.stack([getattr(f, r) for r in roles]))
    other = export_plate(src, out, z=0)   # the same file, another plane: redone
    assert len(other.written) == len(one) and not other.resumed
    with pytest.raises(PlateError, match=r"Z=2.*choose the focal plane, z= or --z"):
        export_plate(src, tmp_path / "out2")


def test_no_resume_redoes_every_frame_identically(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    export_plate(src, out)
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = export_plate(src, out, resume=False)
    assert len(again.written) == 4 and not again.resumed
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert cli("segment", str(src), "-o", str(out), "--no-resume").returncode == 0


def test_missing_channel_and_corrupt_file(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    (src / "C3_02_3_1_Cy5_002.tif").unlink()
    (src / "B2_02_2_1_DAPI_001.tif").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    with pytest.raises(PlateError, match=r"no draq7 channel.*C3_02_1_1_Bright Field_002.tif"):
        export_plate(src, out)
    assert not out.exists()        # discovery problems stop the run before anything is written

    s = export_plate(src, out, on_error="skip")
    assert [tuple(k) for k, _ in s.failed] == [("B2", 1, 1), ("C3", 1, 2)]
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert [(e["well"], e["time"]) for e in errors] == [("B2", "1"), ("C3", "2")]
    assert "B2_02_2_1_DAPI_001.tif" in errors[0]["error"] and "not a readable TIFF" in errors[0]["error"]
    assert "no draq7 channel" in errors[1]["error"] and "C3_02_2_1_DAPI_002.tif" in errors[1]["error"]
    assert [(r["well"], r["time"]) for r in read_manifest(out)] == [("B2", "2"), ("C3", "1")]

    # with the missing channel back, "raise" stops at the corrupt file and names it
    tifffile.imwrite(src / "C3_02_3_1_Cy5_002.tif", plate[("C3", 0, 1)].draq7)
    with pytest.raises(PlateError, match="cannot read .*B2_02_2_1_DAPI_001.tif"):
        export_plate(src, out)
    tifffile.imwrite(src / "B2_02_2_1_DAPI_001.tif", plate[("B2", 0, 0)].hoechst)
    s = export_plate(src, out)
    # The repaired frame is a first time point, so the plate's bleed is measured anew (with
    # its nuclei now): frames are kept only where that number did not change.
    assert ("B2", 1, 1) in [tuple(k) for k in s.written] and len(s.written) + len(s.resumed) == 4
    rows = read_manifest(out)
    assert len(rows) == 4 and {r["params_hash"] for r in rows} == {s.params_hash}
    assert not (out / "errors.csv").exists()


def test_one_export_per_folder(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another export"):
            export_plate(src, out)
    finally:
        os.close(fd)


def test_bad_options(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    with pytest.raises(ValueError, match="on_error"):
        export_plate(src, tmp_path / "o", on_error="ignore")
    with pytest.raises(ValueError, match="patches: size"):
        export_plate(src, tmp_path / "o", patches=4)
    with pytest.raises(ValueError, match="split"):
        export_plate(src, tmp_path / "o", split=(0.5, 0.5))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "livedead_gpu", *map(str, args)], capture_output=True,
                          text=True)


def test_cli_segment(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate, names=dict(GEN5_NAMES, draq7="Texas Red"))
    out = tmp_path / "out"
    proc = cli("segment", src, "-o", out, "--weights", "--patch-size", "32", "--channel-map",
               "Texas Red=draq7", "--layout", "gen5")
    assert proc.returncode == 0, proc.stderr
    assert "4 frames: 4 written, 0 done before" in proc.stdout
    assert len(open_training_set(out, patches=True)) > 0 and len(open_training_set(out)) == 4
    proc = cli("segment", src, "-o", out, "--weights", "--patch-size", "32", "--channel-map",
               "Texas Red=draq7")
    assert proc.returncode == 0 and "0 written, 4 done before" in proc.stdout

    proc = cli("segment", src, "-o", tmp_path / "o2")       # no map: one-line error naming a file
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "no draq7 channel" in err[0] and "Texas Red_001.tif" in err[0]
    proc = cli("segment", src, "-o", tmp_path / "o3", "--channel-map", "Texas Red=dead")
    assert proc.returncode == 2 and "role of 'Texas Red'" in proc.stderr


def test_a_broken_stack_is_skipped_and_listed(tmp_path, plate):
    src = write_stacks(tmp_path / "st", plate)
    (src / "C3_s0.ome.tif").write_bytes(b"II*\x00 broken")
    with pytest.raises(PlateError, match="C3_s0.ome.tif"):
        export_plate(src, tmp_path / "out")
    s = export_plate(src, tmp_path / "out", on_error="skip")
    assert [tuple(k) for k, _ in s.failed] == [("C3", 0, 0)] and len(s.written) == 2
    assert "C3_s0.ome.tif" in (tmp_path / "out" / "errors.csv").read_text()


@pytest.mark.parametrize("layout", ["gen5", "stack"])
def test_out_inside_the_plate_folder(tmp_path, plate, layout):
    # the training set's own TIFFs (images/B2_s00_t0000.tif ...) are not frames of the plate: a rerun
    # resumes instead of finding "two stacks for well B2"
    src = write_gen5(tmp_path / "plate", plate) if layout == "gen5" else write_stacks(tmp_path / "plate", plate)
    first = export_plate(src, src / "out")
    again = export_plate(src, src / "out")
    assert len(first.written) == len(again.resumed) == 4 and not again.written and not again.failed
    with pytest.raises(ValueError, match="is the plate folder itself"):
        export_plate(src, src / ".")


def test_patches_larger_than_the_frames_say_so(tmp_path, caplog):
    src = write_stacks(tmp_path / "st", small_plate(wells=("B2",), n_times=2, size=64))
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        export_plate(src, tmp_path / "out", patches=100)
    assert caplog.text.count("patches of 100 px do not fit frames of 64x64 px") == 1


def test_an_infinite_threshold_is_an_empty_manifest_cell(tmp_path):
    # a brightfield with no block to show its noise gives a gradient threshold of inf, which
    # went into the records as JSON's non-standard Infinity
    import json

    plate = small_plate(wells=("B2",), n_times=1, size=64)
    (key, frame), = plate.items()
    src = write_stacks(tmp_path / "st", {key: dataclasses.replace(frame, brightfield=np.zeros_like(frame.brightfield))})
    export_plate(src, tmp_path / "out")
    (row,) = read_manifest(tmp_path / "out")
    assert row["thr_gradient"] == "" and row["frac_cell"] == "0.0"
    record = next((tmp_path / "out" / "records").glob("*.json")).read_text()
    assert "Infinity" not in record and json.loads(record)["stats"]["thr_gradient"] is None


def test_a_set_written_by_another_version_says_so_on_resume(tmp_path, caplog):
    import json

    src = write_stacks(tmp_path / "st", small_plate(wells=("B2",), n_times=1, size=64))
    out = tmp_path / "out"
    export_plate(src, out)
    about = json.loads((out / "export.json").read_text())
    (out / "export.json").write_text(json.dumps(dict(about, version="0.0.9")))
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        done = export_plate(src, out)
    assert len(done.resumed) == 1 and "written by livedead_gpu 0.0.9" in caplog.text


@pytest.mark.parametrize("scheduler", [None, "threads"])
def test_a_frames_warnings_name_the_frame(tmp_path, scheduler):
    # "draq7 has 35% of its pixels at 0 ..." came without a word of which frame of the plate
    # (on Dask too: frames there run on worker threads)
    plate = small_plate(wells=("B2",), n_times=1, size=128)
    (key, frame), = plate.items()
    clipped = np.clip(frame.draq7.astype(np.int64) - 30, 0, None).astype(np.uint16)
    src = write_gen5(tmp_path / "plate", {key: dataclasses.replace(frame, draq7=clipped)})
    # the frame after the message, so that filters on the message still match it
    with pytest.warns(UserWarning, match=r"^draq7 has \d+% of its pixels at 0 .*"
                                         r"\[well B2 site 1 time 1, .*B2_02_1_1_Bright Field_001.tif\]$"):
        export_plate(src, tmp_path / "out", scheduler=scheduler)


def test_a_plate_that_gains_or_loses_wells_keeps_the_others_splits(tmp_path):
    # The split permuted all wells at once: a 12th well moved 3 of the first 11 between train
    # and val (a model then scored on wells it was trained on).
    import json

    wells = [f"{r}{c}" for r in "ABCD" for c in (1, 2, 3)]
    first = split_wells(wells[:11])
    grown = split_wells(wells, keep=first)
    assert {w: grown[w] for w in first} == first
    assert sorted(grown.values()) == sorted(split_wells(wells).values())   # the shares still hold
    fewer = split_wells(wells[1:11], keep=first)
    assert {w: fewer[w] for w in wells[1:11]} == {w: first[w] for w in wells[1:11]}

    plate = small_plate(wells=tuple(wells), n_times=1, size=64)
    src = write_stacks(tmp_path / "st", {k: v for k, v in plate.items() if k[0] != "D3"})
    out = tmp_path / "out"
    export_plate(src, out)
    before = {r["well"]: r["split"] for r in read_manifest(out)}
    about = json.loads((out / "export.json").read_text())
    assert about["wells"] == before and about["seed"] == 0 and about["version"]
    write_stacks(tmp_path / "st", {k: v for k, v in plate.items() if k[0] == "D3"})
    export_plate(src, out)
    after = {r["well"]: r["split"] for r in read_manifest(out)}
    assert set(after) == set(wells) and {w: after[w] for w in before} == before
    export_plate(src, out, seed=5)   # another seed: a new split, as asked
    assert {r["well"]: r["split"] for r in read_manifest(out)} == split_wells(wells, seed=5)
    # a well the plate loses for a run and then gets back keeps its split (it had been placed
    # as new, and a trained-on well could land in val); a NumPy seed goes into export.json too
    export_plate(src, out, seed=np.int64(5))
    gone = sorted(wells)[0]
    for path in (tmp_path / "st").glob(f"{gone}_*"):
        path.rename(tmp_path / path.name)
    export_plate(src, out, seed=5)
    assert json.loads((out / "export.json").read_text())["wells"][gone] == split_wells(wells, seed=5)[gone]
    for path in tmp_path.glob(f"{gone}_*"):
        path.rename(tmp_path / "st" / path.name)
    export_plate(src, out, seed=5)
    assert {r["well"]: r["split"] for r in read_manifest(out)} == split_wells(wells, seed=5)


def test_a_split_left_without_wells_is_logged(tmp_path, plate, caplog):
    src = write_gen5(tmp_path / "plate", plate)    # 2 wells: 0.7/0.15/0.15 leaves val or test empty
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        export_plate(src, tmp_path / "o")
    assert "2 well(s) split 0.7/0.15/0.15:" in caplog.text and "none for " in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        export_plate(src, tmp_path / "o2", split=(0.5, 0.5, 0))
    assert "none for" not in caplog.text


def test_unread_files_are_logged(tmp_path, plate, caplog):
    src = write_gen5(tmp_path / "plate", plate)
    tifffile.imwrite(src / "B2_thumb.tif", np.zeros((4, 4), np.uint8))
    with caplog.at_level("INFO", logger="livedead_gpu"):
        export_plate(src, tmp_path / "o")
    assert "1 TIFF file(s) in" in caplog.text and "B2_thumb.tif" in caplog.text


@pytest.mark.parametrize("seed", [-1, 1.5, "a", True])
def test_a_bad_seed_is_refused_before_anything_is_written(tmp_path, plate, seed):
    src = write_gen5(tmp_path / "plate", plate)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0 .*, got"):
        export_plate(src, tmp_path / "o", seed=seed)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend", ["cuda", "gpu"])
def test_a_bad_backend_is_refused_before_anything_is_written(tmp_path, plate, backend):
    # "gpu" on a machine without one (CI) fails at the first frame unless checked first
    if backend == "gpu" and get_backend("auto").name != "cpu":
        pytest.skip("this machine has a GPU")
    src = write_gen5(tmp_path / "plate", plate)
    with pytest.raises((ValueError, RuntimeError), match="backend|gpu|GPU|CuPy"):
        export_plate(src, tmp_path / "o", backend=backend)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="backend must be"):
        export_plate(src, tmp_path / "o", backend="cuda", scheduler="synchronous")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("scheduler", ["tcp://127.0.0.1:8786", "local", "thread"])
def test_a_scheduler_string_is_a_local_name(tmp_path, plate, scheduler):
    # dask's own "Expected one of [...]" came after every record of a resume=False run was dropped
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    export_plate(src, out, params=SegmentParams(bleed=0.0))
    records = sorted((out / "records").iterdir())
    for bleed in (0.0, "auto"):
        with pytest.raises(ValueError, match=f"scheduler must be one of .*got '{scheduler}'.*connect"):
            export_plate(src, out, params=SegmentParams(bleed=bleed), scheduler=scheduler, resume=False)
        assert sorted((out / "records").iterdir()) == records
    with pytest.raises(ValueError, match="scheduler must be one of"):
        plate_bleed(open_plate(src), scheduler=scheduler)


def test_cli_patch_size_zero_is_refused(tmp_path, plate):
    # 0 used to be taken as "no patches" and the run went on without them
    src = write_gen5(tmp_path / "plate", plate)
    for size in ("0", "-5"):
        proc = cli("segment", src, "-o", tmp_path / "o", "--patch-size", size)
        assert proc.returncode == 2 and f"--patch-size must be an int >= 8, got {size}" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("scheduler", [None, "synchronous"])
def test_a_frame_the_pipeline_refuses_is_named(tmp_path, plate, scheduler):
    # a frame smaller than one threshold block: the pipeline's message names only "brightfield"
    src = write_gen5(tmp_path / "plate", plate)
    for f in src.glob("C3_02_*_002.tif"):
        tifffile.imwrite(f, tifffile.imread(f)[:10, :10])
    with pytest.raises(ValueError, match=r"well C3 site 1 time 2 \(.*C3_02_1_1_Bright Field_002.tif.*\): "
                                         r"brightfield has shape \(10, 10\)"):
        export_plate(src, tmp_path / "out", scheduler=scheduler)
    summary = export_plate(src, tmp_path / "out", on_error="skip", scheduler=scheduler)
    assert [k for k, _ in summary.failed] == [("C3", 1, 2)]


def test_open_training_set_unknown_split(exported):
    # a typo used to give an empty set: the training loop then ran on nothing
    _, out, _ = exported
    with pytest.raises(ValueError, match=r"split must be train, val or test \(or several\), got 'training'"):
        open_training_set(out, split="training")
    with pytest.raises(ValueError, match=r"got \['train', 'tset'\]"):
        open_training_set(out, split=["train", "tset"])
    assert len(open_training_set(out, split=("train", "val", "test"))) == 4
    # the manifest's own path opens the set; patches of a set without them, an empty split: said so
    assert len(open_training_set(out / "manifest.csv")) == 4
    with pytest.raises(ValueError, match="has no patches"):
        open_training_set(out, patches=True)
    empty = [s for s in ("train", "val", "test") if not open_training_set(out, split=s)]
    for s in empty:
        assert len(open_training_set(out, split=s, weights=True)) == 0


def test_out_that_is_a_file(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"out '.*f' is a file; expected a folder"):
        export_plate(src, tmp_path / "f")


def test_unknown_weight_options(tmp_path, plate):
    # {"sgima": 3} used to be dropped and the default sigma used
    src = write_gen5(tmp_path / "plate", plate)
    with pytest.raises(ValueError, match=r"weights: unknown option\(s\) sgima; known: w0, sigma"):
        export_plate(src, tmp_path / "o", weights={"sgima": 3})
    assert not (tmp_path / "o").exists()
    # checked before anything is written (sigma 0 failed in the writer, after bleed.json)
    for bad, match in (({"w0": "abc"}, r"weights\['w0'\] must be a number >= 0, got 'abc'"),
                       ({"sigma": 0}, r"weights\['sigma'\] must be a number > 0, got 0"),
                       ({"w0": -1.0}, r"weights\['w0'\]"), ({"sigma": float("nan")}, r"weights\['sigma'\]")):
        with pytest.raises(ValueError, match=match):
            export_plate(src, tmp_path / "o", weights=bad)
        assert not (tmp_path / "o").exists()


def test_training_set_without_a_column_is_named(tmp_path, plate):
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    export_plate(src, out)
    rows = list(csv.reader((out / "manifest.csv").open()))
    keep = [i for i, c in enumerate(rows[0]) if c not in ("weights", "split")]
    (out / "manifest.csv").write_text("\n".join(",".join(r[i] for i in keep) for r in rows) + "\n")
    assert len(open_training_set(out)) == len(plate)   # no weights column: no weight maps
    with pytest.raises(ValueError, match=r"manifest.csv' has no column split; its columns: well"):
        open_training_set(out, split="train")


def test_a_rerun_stopped_halfway_lists_no_frame_it_overwrote(tmp_path, plate, monkeypatch):
    # A rerun with new parameters that failed after overwriting a frame had left the old
    # manifest and params.toml in place, naming the new frame's files with the old run's
    # hash and statistics (and patches.csv rows past the end of a rewritten patch file).
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    export_plate(src, out, patches=(32, 0.05))
    assert len(read_manifest(out)) == 4 and (out / "patches.csv").exists()
    import livedead_gpu.export as export

    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("stopped")
        return segment_frame(*args, **kwargs)

    new = SegmentParams(min_nucleus_area=5)
    monkeypatch.setattr(export, "segment_frame", fail_second)
    with pytest.raises(PlateError, match="stopped"):
        export_plate(src, out, params=new, patches=(32, 0.05))
    # every frame was to be redone: the manifest lists the one the stopped run finished, with
    # the new parameters, which params.toml names
    written = SegmentParams.from_toml(out / "params.toml")
    assert dataclasses.replace(written, bleed="auto") == new
    (row,) = read_manifest(out)
    assert row["params_hash"] == written.digest()
    if (out / "patches.csv").exists():
        with open(out / "patches.csv", newline="") as fh:
            assert {(r["well"], r["time"]) for r in csv.DictReader(fh)} == {(row["well"], row["time"])}
    monkeypatch.undo()
    done = export_plate(src, out, params=new, patches=(32, 0.05))
    assert len(done.resumed) == 1 and len(done.written) == 3
    assert {row["params_hash"] for row in read_manifest(out)} == {done.params_hash}


def test_a_frame_redone_loses_its_old_record_before_its_files(tmp_path, plate, monkeypatch):
    # Run B (other parameters) overwrote a frame's TIFFs and died before its record: run A's
    # record stayed, so a rerun with A's parameters took B's mask for A's and skipped it.
    import livedead_gpu.export as export

    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    export_plate(src, out, params=SegmentParams(dead_call="touch"))
    row = read_manifest(out)[0]
    before = tifffile.imread(out / row["classes"])
    real = export.write_record

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(export, "write_record", full_disk)
    with pytest.raises(OSError, match="No space"):
        export_plate(src, out, params=SegmentParams(dead_call="touch", offset=3.0))
    assert not np.array_equal(tifffile.imread(out / row["classes"]), before)  # B's mask is there
    monkeypatch.setattr(export, "write_record", real)
    again = export_plate(src, out, params=SegmentParams(dead_call="touch"))
    assert len(again.written) == 1 and len(again.resumed) == len(plate) - 1
    assert np.array_equal(tifffile.imread(out / row["classes"]), before)


def test_a_corrected_channel_map_redoes_the_frames(tmp_path, plate):
    # The same files in other roles: the signature sorted the files and lost which was which.
    names = {"brightfield": "Bright Field", "hoechst": "Ch2", "draq7": "Ch3"}
    src = write_gen5(tmp_path / "plate", plate, names=names)
    out = tmp_path / "out"
    export_plate(src, out, channel_map={"Ch2": "draq7", "Ch3": "hoechst"})
    again = export_plate(src, out, channel_map={"Ch2": "hoechst", "Ch3": "draq7"})
    assert len(again.written) == len(plate) and not again.resumed
    key = sorted(plate)[0]
    image = tifffile.imread(out / read_manifest(out)[0]["image"])
    assert np.array_equal(image[1], plate[key].hoechst) and np.array_equal(image[2], plate[key].draq7)
    assert len(export_plate(src, out, channel_map={"Ch2": "hoechst", "Ch3": "draq7"}).resumed) == len(plate)


def test_a_frame_without_nuclei_has_no_dead_fraction(tmp_path):
    # Not 0.0 (no nucleus dead) beside the readout's NaN: there is no fraction to give.
    plate = {("B2", 0, 0): synthetic.make_frame((96, 96), n_cells=0, seed=1),
             ("B2", 0, 1): synthetic.make_frame((96, 96), n_cells=6, seed=2)}
    export_plate(write_gen5(tmp_path / "plate", plate), tmp_path / "out")
    rows = read_manifest(tmp_path / "out")
    assert [(r["n_live"], r["n_dead"], r["dead_fraction"]) for r in rows][0] == ("0", "0", "")
    assert float(rows[1]["dead_fraction"]) >= 0
    # an Excel-saved copy ("CSV UTF-8") starts with a byte-order mark
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "out" / "manifest.csv").read_bytes())
    assert read_manifest(tmp_path / "bom.csv") == rows


def test_frames_gone_from_the_plate_are_reported(tmp_path, plate, caplog):
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    export_plate(src, out)
    for f in src.glob("C3_*"):
        f.unlink()
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        export_plate(src, out)
    assert "2 frame(s)" in caplog.text and "C3_s01_t0001" in caplog.text and "listed in no manifest" in caplog.text
    assert {r["well"] for r in read_manifest(out)} == {"B2"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="livedead_gpu"):
        export_plate(src, tmp_path / "fresh")
    assert "not in this plate" not in caplog.text


def _just_dead(f):
    """``f`` with its dead nuclei just so: Hoechst as bright as a live nucleus', Draq7 5x its background."""
    hoechst, draq7 = f.hoechst.astype(np.float32), f.draq7.astype(np.float32)
    dead = f.dead[f.nuclei] & (f.nuclei > 0)
    h_bg, d_bg = np.median(hoechst[f.cells == 0]), np.median(draq7[f.cells == 0])
    hoechst[dead] = h_bg + (hoechst[dead] - h_bg) * (900 / (np.median(hoechst[dead]) - h_bg))
    draq7[dead] = d_bg + (draq7[dead] - d_bg) * (4 * d_bg / (np.median(draq7[dead]) - d_bg))
    return dataclasses.replace(f, hoechst=np.clip(hoechst, 0, 4095).astype(np.uint16),
                               draq7=np.clip(draq7, 0, 4095).astype(np.uint16))


@pytest.fixture(scope="module")
def late_plate():
    # B2 and C3 start 30 % dead; at their second time point B2 is all dead, just so. D4 (a
    # positive control) is all dead, just so, from the start.
    def frame(dead, seed):
        return synthetic.make_frame((128, 128), n_cells=12, dead_fraction=dead, seed=seed)

    return {("B2", 0, 0): frame(0.3, 10), ("B2", 0, 1): _just_dead(frame(1.0, 0)),
            ("C3", 0, 0): frame(0.3, 11), ("C3", 0, 1): frame(0.3, 12),
            ("D4", 0, 0): _just_dead(frame(1.0, 1)), ("D4", 0, 1): _just_dead(frame(1.0, 2))}


def test_bleed_is_measured_once_for_the_plate(tmp_path, late_plate, monkeypatch):
    src = write_gen5(tmp_path / "plate", late_plate)
    late = late_plate[("B2", 0, 1)]
    # One frame alone: under five nuclei under the dead line, so the estimate lands on the
    # dead nuclei and calls most of them live.
    alone = segment_frame(late.brightfield, late.hoechst, late.draq7)
    assert alone.thresholds["bleed"] > 0.05 and alone.n_live >= 5

    out = tmp_path / "out"
    summary = export_plate(src, out)
    per_series = {k: plate_bleed(open_plate(src), scheduler=s)[1] for k, s in (("here", None), ("dask", "sync"))}
    assert per_series["here"] == per_series["dask"] and len(per_series["here"]) == 3
    assert per_series["here"][("D4", 1)] > 0.05     # the positive control's own reading, outvoted
    assert summary.bleed < 0.01
    assert SegmentParams.from_toml(out / "params.toml").bleed == summary.bleed
    rows = {(r["well"], r["time"]): r for r in read_manifest(out)}
    assert {float(r["bleed"]) for r in rows.values()} == {summary.bleed}
    assert (rows[("B2", "2")]["n_live"], int(rows[("B2", "2")]["n_dead"])) == ("0", late.n_dead)
    assert rows[("D4", "1")]["n_live"] == "0"

    # A rerun takes the plate's number from bleed.json and keeps every frame.
    import livedead_gpu.export as export

    def unexpected(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(export, "bleed_readings", unexpected)
    assert len(export_plate(src, out).resumed) == 6
    # A first time point touched: measured again, the same number, only that frame redone.
    monkeypatch.undo()
    os.utime(src / "C3_02_2_1_DAPI_001.tif", ns=(1, 1))
    again = export_plate(src, out)
    # (site and time count from 1 in the file names)
    assert again.bleed == summary.bleed and [tuple(k) for k in again.written] == [("C3", 1, 1)]
    # A number given is used as it is: nothing measured, no note.
    given = export_plate(src, out, params=SegmentParams(bleed=0.02))
    assert given.bleed is None and len(given.written) == 6
    assert not (out / "params.toml").read_text().startswith("#")
    # The article's dead call takes no bleed off: nothing to measure either.
    article = SegmentParams.from_preset("article")
    assert export_plate(src, tmp_path / "article", params=article).bleed is None
    assert SegmentParams.from_toml(tmp_path / "article" / "params.toml") == article


def test_plate_bleed_pools_fields_too_sparse_to_measure_alone(tmp_path):
    # 5 % of the Hoechst in the Draq7 channel; 3 cells a field, so each field alone has
    # under five nuclei to read (its own estimate: 0), but the six first frames pooled do.
    plate = small_plate(wells=("B2", "B3", "C2", "C3", "D2", "D3"), n_times=2, size=64, seed=5)
    for f in plate.values():
        f.draq7[...] = np.clip(f.draq7 + 0.05 * f.hoechst.astype(np.float32), 0, 4095).astype(np.uint16)
    bleed, per_series = plate_bleed(open_plate(write_gen5(tmp_path / "plate", plate)))
    assert set(per_series.values()) == {0.0} and len(per_series) == 6
    assert bleed == pytest.approx(0.05, abs=0.01)


def test_no_first_frame_readable_leaves_bleed_auto(tmp_path, plate):
    # Every series' first frame unreadable (skipped): no plate number, each frame measures its own.
    src = write_gen5(tmp_path / "plate", plate)
    for f in src.glob("*_DAPI_001.tif"):
        f.write_bytes(b"II*\x00 not really a tiff")
    s = export_plate(src, tmp_path / "out", on_error="skip")
    assert s.bleed is None and not (tmp_path / "out" / "bleed.json").exists()
    assert len(s.failed) == 2 and len(s.written) == 2
    assert SegmentParams.from_toml(tmp_path / "out" / "params.toml").bleed == "auto"


def test_serial_export_runs_the_stages_in_turn(tmp_path, plate, monkeypatch):
    # Its writer thread keeps the other core busy: the stages side by side too would only
    # add peak memory (benchmarks/README.md, session 9).
    import cv2

    from livedead_gpu.backends import CpuBackend

    seen = []
    together = CpuBackend.together

    def spy(self, *calls):
        seen.append(self.overlap)
        return together(self, *calls)

    monkeypatch.setattr(CpuBackend, "together", spy)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        src = write_gen5(tmp_path / "plate", plate)
        export_plate(src, tmp_path / "out")
        export_plate(src, tmp_path / "out-dask", scheduler="sync")  # Dask's frames: the same
        segment_frame(*(np.full((64, 64), 100, np.uint16),) * 3)
    finally:
        cv2.setNumThreads(threads)
    assert len(seen) == 2 * 4 + 1 and not any(seen[:-1])  # one call a frame, none overlapping
    assert seen[-1]  # segment_frame alone may overlap
