"""Plates on Dask: byte-identical to the serial run on every scheduler, a worker killed mid-run, errors."""

import contextlib
import os
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from test_io_plate import small_plate, write_gen5

from livedead_gpu.distributed import connect
from livedead_gpu.export import export_plate
from livedead_gpu.io import open_plate, read_manifest
from livedead_gpu.io.plate import Plate

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.filterwarnings("ignore:placed .* cells:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ROOT = Path(__file__).resolve().parents[1]
# Worker processes unpickle this module's plate wrapper by value (they cannot import tests/).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def tree(folder):
    """Every file under ``folder`` (the lock file aside) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    src = write_gen5(root / "plate", small_plate(wells=("B2", "C3", "D4"), n_times=2), pixel_size=0.65)
    serial = root / "serial"
    export_plate(src, serial, weights=True, patches=32)
    return src, serial


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each (the CI machine has two cores)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([old] if old else []))
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", memory_limit="1GiB") as c, \
                distributed.Client(c) as client:
            yield client
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.mark.parametrize("overlap", [True, False])
def test_local_cluster_run_is_byte_identical_to_serial(source, cluster, tmp_path, monkeypatch, overlap):
    import livedead_gpu.distributed as d

    monkeypatch.setattr(d, "OVERLAP_WRITES", overlap)   # writes outside the worker's thread slot, or not
    src, serial = source
    summary = export_plate(src, tmp_path / "out", weights=True, patches=32, scheduler=cluster)
    assert len(summary.written) == 6 and not summary.failed
    assert summary.written == sorted(summary.written)
    assert tree(tmp_path / "out") == tree(serial)
    # a rerun resumes everything, on the cluster too
    again = export_plate(src, tmp_path / "out", weights=True, patches=32, scheduler=cluster)
    assert len(again.resumed) == 6 and not again.written
    assert tree(tmp_path / "out") == tree(serial)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_schedulers_are_byte_identical_to_serial(source, tmp_path, scheduler):
    src, serial = source
    if scheduler == "processes":   # spawned processes import the package
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    export_plate(src, tmp_path / "out", weights=True, patches=32, scheduler=scheduler, opencv_threads=1)
    assert tree(tmp_path / "out") == tree(serial)


class KillOnce(Plate):
    """A plate whose worker process dies (``os._exit``) the first time it reads ``victim``."""

    def __init__(self, inner, marker, victim):
        super().__init__(inner.root, inner.layout, inner.problems, inner.ignored)
        self.inner, self.marker, self.victim = inner, str(marker), victim

    def keys(self):
        return self.inner.keys()

    def sources(self, key):
        return self.inner.sources(key)

    def roles(self, key):
        return self.inner.roles(key)

    def read(self, key):
        if key == self.victim and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)   # the worker process dies mid-run, holding this task
        return self.inner.read(key)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(source, cluster, tmp_path):
    src, serial = source
    inner = open_plate(src)
    plate = KillOnce(inner, tmp_path / "killed", inner.keys()[3])
    summary = export_plate(plate, tmp_path / "out", weights=True, patches=32, scheduler=cluster)
    assert (tmp_path / "killed").exists()   # a worker did die
    assert len(summary.written) == 6 and not summary.failed
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == len({(r["well"], r["site"], r["time"]) for r in rows}) == 6
    assert tree(tmp_path / "out") == tree(serial)
    cluster.wait_for_workers(2, timeout=30)   # the nanny brought it back


def _die_writing(marker, victim):
    """In a worker: the first write of ``victim`` leaves a temporary behind and kills the process
    (the task has seceded from the worker's thread pool by then)."""
    import livedead_gpu.export as export

    original = export._write_frame

    def write(out, stem, key, *args):
        if key == victim and not os.path.exists(marker):
            open(marker, "w").close()
            (out / "images").mkdir(parents=True, exist_ok=True)
            (out / "images" / f".{stem}.tif.dead.part").write_bytes(b"half")
            os._exit(1)
        return original(out, stem, key, *args)

    write.original = original
    export._write_frame = write


def _unpatch_write():
    import livedead_gpu.export as export

    export._write_frame = getattr(export._write_frame, "original", export._write_frame)


def test_a_worker_killed_while_writing_loses_and_duplicates_nothing(source, cluster, tmp_path):
    src, serial = source
    victim = open_plate(src).keys()[2]
    marker = str(tmp_path / "killed")
    cluster.run(_die_writing, marker, victim)
    try:
        summary = export_plate(src, tmp_path / "out", weights=True, patches=32, scheduler=cluster)
    finally:
        cluster.run(_unpatch_write)
    assert os.path.exists(marker)   # a worker did die, in the write
    assert len(summary.written) == 6 and not summary.failed
    assert tree(tmp_path / "out") == tree(serial)   # no temporary left, no duplicated row
    cluster.wait_for_workers(2, timeout=30)


def test_workers_undo_the_nannys_malloc_setting(cluster):
    import platform

    from livedead_gpu.distributed import _tune_malloc

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    # the nanny starts workers with MALLOC_TRIM_THRESHOLD_ (glibc's mmap threshold then stays 128 KiB)
    envs = cluster.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    if not all(envs.values()):
        pytest.skip("this distributed does not set MALLOC_TRIM_THRESHOLD_ in its workers")
    assert all(cluster.run(_tune_malloc, 1024 * 1024).values())
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        assert _tune_malloc(1024 * 1024) is False   # a plain process is left alone


def test_errors_are_skipped_or_raised_on_the_cluster(source, cluster, tmp_path):
    src, _ = source
    victim = sorted(src.glob("C3_*DAPI_001.tif"))[0]
    bad = tmp_path / "plate"
    bad.mkdir()
    for p in src.iterdir():
        (bad / p.name).write_bytes(b"not a tiff" if p == victim else p.read_bytes())
    summary = export_plate(bad, tmp_path / "skip", on_error="skip", scheduler=cluster)
    assert len(summary.written) == 5 and len(summary.failed) == 1
    assert summary.failed[0][0][:1] == ("C3",)
    assert (tmp_path / "skip" / "errors.csv").is_file()
    with pytest.raises(Exception, match="C3"):
        export_plate(bad, tmp_path / "raise", scheduler=cluster)
    # the frames in flight finished before it returned (cancelled, a task writing after seceding
    # had gone on writing into OUT after the lock was released): no temporary, nothing written
    # later, and the manifest lists what was written
    import time

    out = tmp_path / "raise"
    done = sorted(p.name for p in (out / "records").glob("*.json"))
    assert not list(out.rglob("*.part"))
    time.sleep(1.0)
    assert sorted(p.name for p in (out / "records").glob("*.json")) == done and not list(out.rglob("*.part"))
    assert len(read_manifest(out)) == len(done)


def test_connect_errors():
    # Typos first: each made a half-built Client, after which an unanswered address could
    # fail on an AssertionError of distributed's instead of this RuntimeError.
    for typo in ("bogus", "thread", "", "tcp://host"):
        with pytest.raises(ValueError, match=f"scheduler '{typo}' is neither a local scheduler"):
            with connect(typo, timeout=1):
                pass
    with pytest.raises(RuntimeError, match="tcp://127.0.0.1:9"):
        with connect("tcp://127.0.0.1:9", timeout=1):
            pass
    # something else listening: a server that greets first (an ssh port: Dask had raised a
    # MemoryError reading the greeting as a length), and one that never answers (it had hung)
    import socket
    import threading

    for greeting, why in ((b"SSH-2.0-OpenSSH_9.6\r\n", "MemoryError"), (b"", "no answer")):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        open_ = []

        def serve(server=server, greeting=greeting, open_=open_):
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    conn.sendall(greeting)
                    open_.append(conn)

        threading.Thread(target=serve, daemon=True).start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(RuntimeError, match=f"did not answer as a Dask scheduler within 1 s \\({why}"):
            with connect(address, timeout=1):
                pass
        server.close()
        for conn in open_:
            conn.close()
    with pytest.raises(ValueError, match="workers"):
        with connect(workers=0):
            pass
    with pytest.raises(ValueError, match="gpus"):
        with connect("threads", gpus=1):
            pass
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="dask-cuda"):
            with connect(gpus="auto"):
                pass
    with connect() as s:
        assert s is None
    with connect("threads") as s:
        assert s == "threads"


def test_cli_segment_on_workers_and_its_errors(source, tmp_path, monkeypatch, capsys):
    from livedead_gpu.cli import main

    src, serial = source
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    assert main(["segment", str(src), "-o", str(tmp_path / "out"), "--weights", "--patch-size", "32",
                 "--workers", "2", "--opencv-threads", "1", "--memory-limit", "1GiB"]) == 0
    assert tree(tmp_path / "out") == tree(serial)
    assert main(["segment", str(src), "-o", str(tmp_path / "t"), "--weights", "--patch-size", "32",
                 "--scheduler", "threads", "--workers", "2"]) == 0
    assert tree(tmp_path / "t") == tree(serial)
    capsys.readouterr()
    assert main(["segment", str(src), "-o", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:9",
                 "--scheduler-timeout", "1"]) == 2
    assert "tcp://127.0.0.1:9" in capsys.readouterr().err
    assert main(["segment", str(src), "-o", str(tmp_path / "x"), "--gpus", "zero"]) == 2
    assert "--gpus" in capsys.readouterr().err


def test_cli_on_workers_prints_the_runs_lines_not_dasks(source, tmp_path):
    # A fresh process: distributed reads its log levels when first imported. It printed ~30
    # lines of cluster start and stop (scheduler, nannies, workers) around the run's own.
    import subprocess

    src, _ = source
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "livedead_gpu", "segment", str(src), "-o", str(tmp_path / "out"),
                           "--workers", "2", "--memory-limit", "1GiB"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "written" in proc.stdout
    dask_lines = [line for line in proc.stderr.splitlines()
                  if any(word in line for word in ("Nanny", "Scheduler", "scheduler", "worker", "Worker"))]
    assert not dask_lines, proc.stderr


def _scheduler_has_stealing(dask_scheduler=None):
    return "stealing" in dask_scheduler.extensions


def _profiling():
    import dask

    return dask.config.get("distributed.worker.profile.enabled")


def test_local_cluster_is_lean():
    # The clusters the package starts leave the cores to the frames: no work stealing,
    # no statistical profiler in the workers (see livedead_gpu.distributed.LEAN).
    with connect("local", workers=1) as client:
        assert client.run_on_scheduler(_scheduler_has_stealing) is False
        assert set(client.run(_profiling).values()) == {False}


def test_gpu_cluster_leaves_the_devices_to_dask_cuda(monkeypatch):
    # A batch scheduler's CUDA_VISIBLE_DEVICES=2,3 (or MIG UUIDs): a list 0..n-1 of our own had
    # pinned the workers to physical GPUs 0 and 1. dask-cuda reads the variable itself.
    import sys
    import types

    from livedead_gpu import distributed as ld

    made = {}

    class Cluster:
        def __init__(self, **kwargs):
            made.clear()
            made.update(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Client(Cluster):
        def __init__(self, cluster):
            pass

    monkeypatch.setitem(sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=Cluster))
    monkeypatch.setattr(ld, "gpu_count", lambda: 2)
    monkeypatch.setattr(ld, "_import_distributed", lambda: types.SimpleNamespace(Client=Client))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    for gpus, workers in (("auto", None), (1, 1), (2, 2)):
        with ld._cuda_cluster(gpus, 1, "auto"):
            assert made["n_workers"] == workers and "CUDA_VISIBLE_DEVICES" not in made
    with pytest.raises(ValueError, match="gpus=3 but only 2"):
        with ld._cuda_cluster(3, 1, "auto"):
            pass


def test_a_mosaic_on_the_cluster(cluster):
    # Each tile on a worker process: the class mask is the whole frame's. store() into a NumPy
    # array had filled the workers' copies and left this one empty (80 % "equal": background).
    from livedead_gpu import segment_frame, synthetic
    from livedead_gpu.mosaic import segment_mosaic

    f = synthetic.make_frame((512, 512), n_cells=80, seed=1)
    m = segment_mosaic(f.brightfield, f.hoechst, f.draq7, tile=256)
    whole = segment_frame(f.brightfield, f.hoechst, f.draq7)
    assert (m.classes.compute() == whole.classes).all() and m.counts() == (whole.n_live, whole.n_dead)
    with pytest.raises(ValueError, match="classes is a NumPy array, which the workers of a distributed cluster"):
        m.store(np.zeros(m.classes.shape, np.uint8))
    with pytest.raises(ValueError, match="or a process pool"):   # copies too
        m.store(np.zeros(m.classes.shape, np.uint8), scheduler="processes")
    classes = np.zeros(m.classes.shape, np.uint8)   # a local scheduler fills it
    assert m.store(classes, scheduler="threads") == (whole.n_live, whole.n_dead)
    assert (classes == whole.classes).all()
