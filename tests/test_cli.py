"""The command line, run as a user runs it: a subprocess."""

import csv
import subprocess
import sys

import numpy as np
import tifffile

from livedead_gpu import SegmentParams


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "livedead_gpu", *args], capture_output=True, text=True, cwd=cwd)


def test_demo_writes_masks_summary_and_params(tmp_path):
    out = tmp_path / "demo"
    proc = run("demo", "--out", str(out), "--size", "128", "--times", "3")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 3 * 3
    for row in rows:
        classes = tifffile.imread(out / row["classes_file"])
        assert classes.shape == (128, 128) and classes.dtype == np.uint8
        assert classes.max() <= 4
        cells = tifffile.imread(out / row["classes_file"].replace("_classes", "_cells"))
        assert cells.dtype == np.int32
        truth = int(row["true_live"]) + int(row["true_dead"])
        assert abs(int(row["n_live"]) + int(row["n_dead"]) - truth) <= max(1, 0.1 * truth)
    # bleed="auto" measured once for the plate (its wells' first time points): no bleed-through here
    written = SegmentParams.from_toml(out / "params.toml")
    assert written == SegmentParams(bleed=written.bleed) and 0 <= written.bleed < 0.01
    assert not list(out.rglob("*.part")), "temporary files left behind"
    assert "frames in" in proc.stdout
    # the plate's images, as an imager writes them: what `segment` reads
    from livedead_gpu import synthetic
    from livedead_gpu.io import open_plate

    plate = open_plate(out / "plate")
    truth = synthetic.make_plate(wells=("A1", "A2", "B1"), sites=1, n_times=3, shape=(128, 128), n_cells=5, seed=0)
    assert len(plate) == len(truth) == 9
    for (well, site, t), f in truth.items():
        read = plate.read((well, site + 1, t + 1))
        assert all((getattr(read, c) == getattr(f, c)).all() for c in ("brightfield", "hoechst", "draq7"))
    # a second demo of fewer time points into the same folder leaves none of the first's frames
    assert run("demo", "--out", str(out), "--size", "128", "--times", "1").returncode == 0
    assert len(open_plate(out / "plate")) == 3 and len(list((out / "masks").glob("*_classes.tif"))) == 3


def test_demo_reads_a_config(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text("[segment]\nmin_nucleus_area = 5\n")
    proc = run("demo", "--out", str(tmp_path / "o"), "--size", "96", "--times", "1", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert SegmentParams.from_toml(tmp_path / "o" / "params.toml").min_nucleus_area == 5


def test_bad_config_is_one_line(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text("kernel_size = 4\n")
    proc = run("demo", "--out", str(tmp_path / "o"), "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "kernel_size must be odd" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_flags_are_checked_by_name(tmp_path):
    for flag, value, message in (("--size", "10", "--size must be an int >= 32, got 10"),
                                 ("--times", "0", "--times must be an int >= 1, got 0"),
                                 ("--seed", "-1", "--seed must be an int >= 0, got -1")):
        proc = run("demo", "--out", str(tmp_path / "o"), flag, value)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    # 364 TiB of labels: more than any address space, so refused even where memory is overcommitted
    proc = run("demo", "--out", str(tmp_path / "o"), "--size", "10000000")
    assert proc.returncode == 2 and "error: out of memory: Unable to allocate" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
