import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ADCC = DATA / "celldetective_adcc_livedead"


def pytest_runtest_setup(item):
    """GPU tests skip without a GPU, but fail when LIVEDEAD_REQUIRE_GPU=1."""
    if item.get_closest_marker("gpu") is None:   # the marker, not a parameter id that reads "gpu"
        return
    from livedead_gpu.backends import _gpu_available

    if _gpu_available():
        return
    if os.environ.get("LIVEDEAD_REQUIRE_GPU") == "1":
        pytest.fail("LIVEDEAD_REQUIRE_GPU=1 but CuPy sees no CUDA device", pytrace=False)
    pytest.skip("no CUDA device (LIVEDEAD_REQUIRE_GPU=1 turns this skip into a failure)")


@pytest.fixture(autouse=True)
def _no_stale_distributed_scheduler():
    """A closed `distributed.Client` that left dask's global ``scheduler`` on "dask.distributed"
    (its close skips the reset when it times out or another Client is still registered) sent a
    later test's ``compute()`` to no Client at all: a rare CI failure in test_mosaic after
    test_distributed. Each test starts without such a leftover."""
    import dask

    if dask.config.get("scheduler", None) in ("dask.distributed", "distributed"):
        try:
            from distributed import default_client

            default_client()   # a live Client: the setting is its own (test_distributed's fixture)
        except (ImportError, ValueError):
            dask.config.config.pop("scheduler", None)
    yield


@pytest.fixture(scope="session")
def adcc_dir():
    if not ADCC.is_dir():
        pytest.skip(f"real data not found at {ADCC}")
    return ADCC


# The article's transcription lives in benchmarks/ (a baseline, not package code).
import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


COELHO = DATA / "coelho2009_hoechst_nuclei"


@pytest.fixture(scope="session")
def coelho_dir():
    if not COELHO.is_dir():
        pytest.skip(f"real data not found at {COELHO}")
    return COELHO
