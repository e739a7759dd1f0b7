"""`readout`, `qc`, `info`, `demo`'s pictures and --quiet, run as a user runs them: a subprocess."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from livedead_gpu import qc
from livedead_gpu.cli import main
from livedead_gpu.readout import FRAME_COLUMNS, WELL_COLUMNS

from _training_set import make_plate, write_training_set


def run(*args):
    return subprocess.run([sys.executable, "-m", "livedead_gpu", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "plate1"
    plate = write_training_set(root, make_plate())
    return root, plate


def within(found, truth):
    return abs(found - truth) <= max(1, 0.1 * truth)


def test_readout_command_against_ground_truth(training_set):
    root, plate = training_set
    proc = run("readout", root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = root / "readout"
    with (out / "frames.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == FRAME_COLUMNS
        frames = list(reader)
    assert len(frames) == len(plate)
    for row in frames:
        truth = plate[(row["well"], int(row["site"]), int(row["time"]))]
        assert within(int(row["n_live"]), truth.n_live), row
        assert within(int(row["n_dead"]), truth.n_dead), row
    with (out / "wells.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == WELL_COLUMNS
        wells = list(reader)
    assert len(wells) == 4 * 3
    for row in wells:
        sites = [f for (w, _, t), f in plate.items() if w == row["well"] and t == int(row["time"])]
        live, dead = sum(f.n_live for f in sites), sum(f.n_dead for f in sites)
        assert within(int(row["n_live"]), live) and within(int(row["n_dead"]), dead)
        assert float(row["dead_fraction"]) == pytest.approx(dead / (live + dead), abs=0.1)
        assert 0 < float(row["cell_fraction"]) < 1
    assert imread(out / "kill_curves.png").shape[:2] == (500, 800)
    assert imread(out / "plate_map.png").ndim == 3
    assert "B3" in proc.stdout and "wrote" in proc.stdout


def test_readout_to_elsewhere_and_quiet(training_set, tmp_path, capsys):
    root, _ = training_set
    assert main(["--quiet", "readout", str(root), "--to", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "readout" / "wells.csv").is_file()
    (tmp_path / "file").write_text("")
    for command in ("readout", "qc"):
        assert main([command, str(root), "--to", str(tmp_path / "file")]) == 2
        assert "--to" in capsys.readouterr().err


def test_qc_command_writes_panels_gifs_and_report(training_set, tmp_path):
    root, _ = training_set
    proc = run("qc", root, "--frames", "3", "--to", tmp_path, "--no-gifs")
    assert proc.returncode == 0, proc.stderr
    panels = sorted((tmp_path / "qc" / "panels").glob("*.png"))
    assert [p.name for p in panels] == ["A1_s00_t0002.png", "A2_s00_t0002.png", "B1_s00_t0002.png"]
    present = set()
    for panel in panels:
        img = imread(panel)
        assert img.shape[:2] == (1040, 1000)
        # the class panel, lower right
        present |= {tuple(c) for c in np.rint(img[500:960, 500:, :3] * 255).astype(int).reshape(-1, 3)}
    for name, colour in zip(("background", "cell", "outline", "hoechst", "draq7"), qc.CLASS_COLORS):
        assert tuple(int(c) for c in colour) in present, name
    assert not (tmp_path / "qc" / "gifs").exists()
    report = (tmp_path / "report.html").read_text()
    assert "kill_curves.png" in report and "manifest.csv" in report and "qc/panels/" in report
    assert "report.html" in proc.stdout


def test_info_command():
    proc = run("info")
    assert proc.returncode == 0, proc.stderr
    for word in ("livedead-gpu 0.1.0", "python", "numpy", "opencv", "tifffile", "dask", "backends: cpu", "GPUs"):
        assert word in proc.stdout


def test_demo_writes_readout_and_a_qc_panel(tmp_path):
    proc = run("demo", "--out", tmp_path, "--size", "96", "--times", "2")
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "readout" / "wells.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3 * 2
    assert imread(tmp_path / "readout" / "kill_curves.png").shape[:2] == (500, 800)
    (panel,) = (tmp_path / "qc").glob("*.png")
    assert imread(panel).shape[:2] == (1040, 1000)


def test_bad_input_subprocess_is_one_line(tmp_path):
    proc = run("readout", tmp_path / "missing")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"livedead-gpu: error: training-set folder not found: {tmp_path / 'missing'}"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["readout", "qc"])
@pytest.mark.parametrize("setup, message", [
    (None, "training-set folder not found"),
    ("", "no manifest.csv in"),
    ("well,site,time,n_live\nA1,0,0,3\n", r"missing column(s) n_dead"),
    ("well,site,time,n_live,n_dead\nA1,0,0,x,1\n", "line 2: n_live must be an integer >= 0, got 'x'"),
    ("well,site,time,n_live,n_dead\n", "no frames"),
])
def test_bad_training_sets_are_one_line_errors(tmp_path, capsys, command, setup, message):
    root = tmp_path / "ts"
    if setup is not None:
        root.mkdir()
        if setup:
            (root / "manifest.csv").write_text(setup)
    assert main([command, str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("livedead-gpu: error: ") and err.count("\n") == 1
    assert message in err


def test_cli_argument_slips(training_set, tmp_path, capsys):
    root, _ = training_set
    assert main(["readout", str(root / "manifest.csv"), "--to", str(tmp_path / "r")]) == 0  # the manifest named
    assert (tmp_path / "r" / "readout" / "frames.csv").is_file()
    (tmp_path / "afile").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "afile")]) == 2
    assert "--out '" in capsys.readouterr().err
    for args, message in ((["--min-foreground", "0.2"], "--min-foreground 0.2 is a patch's share; it needs --patch-size"),
                          (["--opencv-threads", "-5"], "--opencv-threads must be an int >= 1, got -5"),
                          # had reached Dask: a 38-line nanny traceback, or a KeyError
                          (["--threads-per-worker", "0"], "--threads-per-worker must be an int >= 1, got 0"),
                          (["--scheduler-timeout", "nan"], "--scheduler-timeout must be a number of seconds > 0"),
                          (["--scheduler-timeout", "-5"], "--scheduler-timeout must be a number of seconds > 0")):
        assert main(["segment", str(tmp_path), "--out", str(tmp_path / "o"), *args]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_readout_checks_fractions_and_names_the_classes_file(tmp_path, capsys):
    root = tmp_path / "ts"
    root.mkdir()
    head = "well,site,time,n_live,n_dead,frac_background,classes\n"
    (root / "manifest.csv").write_text(head + "A1,0,0,3,1,1.7,\n")
    assert main(["readout", str(root)]) == 2
    assert "frac_background must be a number >= 0 and <= 1, got '1.7'" in capsys.readouterr().err
    (root / "bad.tif").write_bytes(b"not a tiff")
    (root / "manifest.csv").write_text(head + "A1,0,0,3,1,,bad.tif\n")
    assert main(["readout", str(root)]) == 2
    err = capsys.readouterr().err
    assert "manifest row A1 site 0 time 0: cannot read classes file" in err and "bad.tif" in err


def test_qc_needs_image_columns(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("well,site,time,n_live,n_dead\nA1,0,0,3,1\n")
    assert main(["qc", str(tmp_path)]) == 2
    assert "missing column(s) image, classes (needed by qc)" in capsys.readouterr().err


def test_bad_frames_option(training_set, capsys):
    root, _ = training_set
    assert main(["qc", str(root), "--frames", "-1"]) == 2
    assert "--frames must be >= 0" in capsys.readouterr().err


def test_quiet_and_verbose_exclude_each_other():
    proc = run("-q", "-v", "info")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


@pytest.mark.filterwarnings("ignore:placed .* cells:UserWarning")
def test_segment_then_readout_and_qc_end_to_end(tmp_path):
    """A Gen5 plate folder through the real export, then the readout and QC read its manifest."""
    from test_io_plate import write_gen5

    plate = make_plate(size=96, times=3, sites=1)
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "ts"
    proc = run("segment", src, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(plate)} frames: {len(plate)} written" in proc.stdout
    proc = run("-q", "segment", src, "-o", out)   # errors only
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout
    proc = run("readout", out)
    assert proc.returncode == 0, proc.stderr
    with (out / "readout" / "frames.csv").open() as fh:
        frames = list(csv.DictReader(fh))
    assert len(frames) == len(plate)
    for row in frames:  # Gen5 names number sites and time points from 1
        truth = plate[(row["well"], int(row["site"]) - 1, int(row["time"]) - 1)]
        assert within(int(row["n_live"]), truth.n_live) and within(int(row["n_dead"]), truth.n_dead), row
    proc = run("qc", out, "--frames", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "qc" / "panels").glob("*.png"))) == 1 and (out / "report.html").is_file()
    assert len(list((out / "qc" / "gifs").glob("*.gif"))) == 4


def test_info_lists_gpus_cupy_sees(monkeypatch, capsys):
    """No GPU here: a stand-in CuPy module with one device checks the reporting path."""
    import types

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Fake H100", "totalGlobalMem": 80 * 2**30, "major": 9, "minor": 0})
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime)))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends: cpu, gpu" in out and "0: Fake H100, 80.0 GiB, compute capability 9.0" in out

    def no_device():
        raise RuntimeError("cudaErrorNoDevice")

    monkeypatch.setattr(runtime, "getDeviceCount", no_device)
    assert main(["info"]) == 0
    assert "gpu: CuPy sees no CUDA device (RuntimeError)" in capsys.readouterr().out


def test_interrupted_is_one_line_and_the_manifest_lists_the_frames_done(tmp_path, capsys, monkeypatch):
    # Ctrl-C printed a 34-line traceback and left no manifest over 35 finished frames
    import livedead_gpu.export as export
    from livedead_gpu import segment_frame
    from livedead_gpu.io import read_manifest
    from test_io_plate import small_plate, write_gen5

    src = write_gen5(tmp_path / "plate", small_plate(wells=("B2", "C3"), n_times=2, size=64))
    calls = []

    def interrupt_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return segment_frame(*args, **kwargs)

    monkeypatch.setattr(export, "segment_frame", interrupt_third)
    assert main(["segment", str(src), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "livedead-gpu: interrupted"
    assert len(read_manifest(tmp_path / "o")) == 2
    monkeypatch.undo()
    assert main(["segment", str(src), "--out", str(tmp_path / "o")]) == 0
    assert len(read_manifest(tmp_path / "o")) == 4


def test_quiet_silences_warnings_and_evaluates_quietly(tmp_path, capsys):
    import warnings

    with warnings.catch_warnings():
        assert main(["-q", "demo", "--out", str(tmp_path / "d"), "--size", "64", "--times", "1"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""   # a 64² demo no longer asks for 20 cells, nor warns


def test_segment_that_skips_every_frame_fails(tmp_path, capsys):
    # --on-error skip over a plate whose every frame lacks Draq7 had exited 0 with an empty
    # manifest (readout and qc then failed on it)
    from test_io_plate import write_gen5

    from livedead_gpu.cli import main

    src = write_gen5(tmp_path / "plate", make_plate(size=64, times=1, sites=1))
    for path in src.glob("*_Cy5_*.tif"):
        path.unlink()
    assert main(["segment", str(src), "-o", str(tmp_path / "o")]) == 2
    assert "--on-error skip" in capsys.readouterr().err
    assert main(["segment", str(src), "-o", str(tmp_path / "o"), "--on-error", "skip"]) == 1
    err = capsys.readouterr().err
    assert err.count("skipped ") >= 2 and "all " in err and "frames were skipped for errors" in err
