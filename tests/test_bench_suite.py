"""`livedead-gpu bench --quick`: the suite runs and its table and JSON have the promised shape (not speed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("skimage")  # the scikit-image baseline is a test extra


def bench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "livedead_gpu", "bench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # standin: the GPU rows run the GPU backend's code on NumPy, so their shape is checked without a GPU
    proc = bench("--quick", "--sizes", "128,192", "--backend", "standin", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc, out, json.loads((out / "suite.json").read_text()), (out / "suite.md").read_text()


STAGES = ["threshold (Hoechst)", "gradient (Sobel)", "gradient threshold", "cell-area morphology + fill",
          "nuclei (2 channels)", "separation", "class mask", "whole frame"]
ALL = ["article", "scikit-image", "cpu", "gpu resident"]


def test_json_keys(quick):
    _, _, res, _ = quick
    assert {"date", "command", "machine", "settings", "frames", "timings", "memory", "plate", "quality",
            "seconds"} <= set(res)
    for key in ("cpu", "cores", "python", "numpy", "opencv", "scikit-image", "git", "gpu"):
        assert key in res["machine"], key
    assert res["settings"]["sizes"] == [128, 192] and res["settings"]["repeats"] == 2
    for r in res["timings"]:
        assert {"stage", "implementation", "size", "median_ms", "min_ms", "repeats", "vs_article", "vs_cpu"} <= set(r)
        assert r["median_ms"] > 0


def test_every_implementation_stage_and_size_is_timed(quick):
    _, _, res, _ = quick
    have = {(r["stage"], r["implementation"], r["size"]) for r in res["timings"]}
    for size in (128, 192):
        for stage in STAGES:
            for impl in ALL:
                assert (stage, impl, size) in have, (stage, impl, size)
        for stage in ("separation", "whole frame"):
            assert (stage, "cpu · voronoi", size) in have and (stage, "gpu resident · voronoi", size) in have
        for impl in ("gpu end to end", "gpu end to end · voronoi"):
            assert ("whole frame", impl, size) in have
    # ratios are taken within the run: the article is 1x itself
    assert all(r["vs_article"] == 1.0 for r in res["timings"] if r["implementation"] == "article")


def test_markdown_table_shape(quick):
    proc, _, res, md = quick
    assert md in proc.stdout
    header = "| stage | implementation | 128² ms | × article | × cpu | 192² ms | × article | × cpu |"
    assert header in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln.split(" | ")[0][2:] in STAGES]
    assert len(rows) == len({(r["stage"], r["implementation"]) for r in res["timings"]})
    assert all(ln.count("|") == header.count("|") for ln in rows)
    for heading in ("## Time per stage", "## Peak memory", "## Plate export", "## Label quality"):
        assert heading in md


def test_memory_plate_and_quality_sections(quick):
    _, _, res, md = quick
    mem = {(r["implementation"], r["size"]) for r in res["memory"]}
    assert {(i, s) for i in ("article", "scikit-image", "cpu", "cpu · voronoi") for s in (128, 192)} <= mem
    assert all(r["rss_growth_mib"] >= 0 for r in res["memory"])
    runs = res["plate"]["rows"]
    assert runs[0]["run"].startswith("serial") and runs[0]["frames_per_s"] > 0
    # Dask workers measured, or a row that says why not
    assert any(r["workers"] == 1 and "Dask" in r["run"] for r in runs) or any(r.get("not_measured") for r in runs)
    names = [r["implementation"] for r in res["quality"]["synthetic"]]
    assert names == ["article", "scikit-image", "cpu", "cpu · voronoi"]
    assert res["quality"]["real"] == {"skipped": "--quick"}
    for name in names:
        assert re.search(rf"^\| {re.escape(name)} \| [01]\.\d{{3}} \|", md, re.M), name


def test_bad_option_is_one_line(tmp_path):
    proc = bench("--quick", "--sizes", "12x")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--sizes" in proc.stderr
    # 0 had meant the default (2 repeats); a file as --out failed after the whole suite
    (tmp_path / "afile").write_text("x")
    for args, message in ((("--repeats", "0"), "--repeats must be >= 1, got 0"),
                          (("--out", str(tmp_path / "afile")), "is a file; expected a folder")):
        proc = bench("--quick", *args)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_without_a_checkout_says_what_is_missing(tmp_path):
    # The package copied alone (as pip installs it), run from a folder without benchmarks/
    import shutil

    shutil.copytree(ROOT / "livedead_gpu", tmp_path / "site" / "livedead_gpu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-m", "livedead_gpu", "bench", "--quick"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "benchmarks/suite.py" in proc.stderr and "source checkout" in proc.stderr
