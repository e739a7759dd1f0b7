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
