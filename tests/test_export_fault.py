"""Fault test: an export killed with SIGKILL mid-plate resumes to the same training set."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from test_io_plate import small_plate, write_gen5

from livedead_gpu.io import read_manifest

# small synthetic frames cannot always place every cell; that is fine here
pytestmark = pytest.mark.filterwarnings("ignore:placed .* cells:UserWarning")
ARGS = ["--weights", "--patch-size", "32"]


def start(src, out):
    return subprocess.Popen([sys.executable, "-m", "livedead_gpu", "segment", str(src), "-o", str(out), *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after(proc, records, n, timeout=60.0):
    """SIGKILL ``proc`` as soon as ``records`` holds at least ``n`` records; return how many it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(list(records.glob("*.json"))) if records.is_dir() else 0
        if done >= n or proc.poll() is not None:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return done


def tree(out):
    """Every file under ``out`` but the lock, as bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_sigkill_mid_plate_then_resume_equals_an_uninterrupted_run(tmp_path):
    plate = small_plate(wells=("A1", "B2", "C3"), n_times=4, size=128)          # 12 frames
    src = write_gen5(tmp_path / "plate", plate, pixel_size=0.5)

    ref = tmp_path / "ref"
    proc = subprocess.run([sys.executable, "-m", "livedead_gpu", "segment", str(src), "-o", str(ref), *ARGS],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(read_manifest(ref)) == 12

    out = tmp_path / "out"
    killed_at = []
    for n in (3, 7):          # killed twice, at different points
        p = start(src, out)
        killed_at.append(kill_after(p, out / "records", n))
        assert p.returncode == -signal.SIGKILL, "the export finished before it could be killed"
        # whatever is under a final name is whole: every TIFF reads
        for f in out.rglob("*.tif"):
            tifffile.imread(f)
    assert 3 <= killed_at[0] < 12 and killed_at[1] < 12, killed_at

    proc = subprocess.run([sys.executable, "-m", "livedead_gpu", "segment", str(src), "-o", str(out), *ARGS],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "done before" in proc.stdout and "0 done before" not in proc.stdout

    got, want = tree(out), tree(ref)
    assert not [name for name in got if name.endswith(".part")]
    assert sorted(got) == sorted(want)
    different = [name for name in want if got[name] != want[name]]
    assert not different, f"files differ from the uninterrupted run: {different}"
    rows = read_manifest(out)
    assert len(rows) == len({(r["well"], r["site"], r["time"]) for r in rows}) == 12
    for r in rows:
        np.testing.assert_array_equal(tifffile.imread(out / r["classes"]), tifffile.imread(ref / r["classes"]))


def test_stale_partials_are_swept(tmp_path):
    plate = small_plate(wells=("A1",), n_times=1)
    src = write_gen5(tmp_path / "plate", plate)
    out = tmp_path / "out"
    (out / "classes").mkdir(parents=True)
    stale = out / "classes" / ".A1_s01_t0001.tif.abc123.part"
    stale.write_bytes(b"half a file")
    keep = out / "notes.part"            # not a name our writers make
    keep.write_text("mine")
    from livedead_gpu.export import export_plate

    export_plate(src, out)
    assert not stale.exists() and keep.exists()
    assert os.listdir(out / "classes") == ["A1_s01_t0001.tif"]
