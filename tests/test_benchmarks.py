"""The benchmark scripts still run (their figures are not checked: timings are not tests)."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args):
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_gpu_benchmark_through_the_standins(tmp_path):
    out = run("bench_gpu.py", "--standin", "--size", "96", "--repeats", "1", "--json", str(tmp_path / "g.json"))
    assert "| frame end to end, voronoi |" in out
    assert (tmp_path / "g.json").stat().st_size > 0


def test_frame_benchmark_quick(tmp_path):
    out = run("bench_frame.py", "--quick", "--no-memory", "--repeats", "1", "--json", str(tmp_path / "f.json"))
    assert "| whole frame |" in out and "| threshold (block-max) |" in out


def test_read_benchmark_small():
    # it asserts that both ways of reading give the same pixels
    out = run("bench_read.py", "--positions", "3", "--times", "2", "--size", "32", "--frames", "4")
    assert out.count("ratio") == 2 and "OME-TIFF" in out


def test_output_hashes_catch_a_change(tmp_path):
    import json

    saved = tmp_path / "h.json"
    run("output_hashes.py", "--quick", "--save", str(saved))
    assert "6 cases: 0 differ" in run("output_hashes.py", "--quick", "--check", str(saved))
    hashes = json.loads(saved.read_text())
    hashes[next(iter(hashes))] = "0" * 16
    saved.write_text(json.dumps(hashes))
    proc = subprocess.run([sys.executable, str(BENCH / "output_hashes.py"), "--quick", "--check", str(saved)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "1 differ" in proc.stdout
