"""Plates on Dask: frames across worker processes, machines and GPUs.

`export_plate(..., scheduler=...)` maps its frames through Dask instead of its own
loop (`export_frames`, called from there): one task per frame reads the frame's
three planes, segments them and writes the frame's files and, last, its record, all
atomically, on the worker. The tasks return only the small records, the driver
rebuilds the manifest from them at the end (as the serial path does), so a
distributed run's training set is byte-identical to a serial one, whatever the
scheduler, and a worker that dies mid-run only has its frames recomputed elsewhere
(distributed's ``allowed-failures`` retries; a frame's files are replaced
atomically, and half-written temporaries are swept at the end).

Schedulers (`connect`):

- ``"synchronous"``, ``"threads"``, ``"processes"``: Dask's local schedulers
  (``workers`` threads or processes);
- ``"local"`` or ``workers=N`` alone: a `distributed.LocalCluster` of N worker
  processes (one thread each, memory bounded per worker);
- ``"tcp://HOST:PORT"`` (any address): an existing distributed cluster;
- a `distributed.Client`;
- ``gpus="auto"`` or N: a `dask_cuda.LocalCUDACluster`, one worker per GPU, each
  pinned to its device by ``CUDA_VISIBLE_DEVICES`` (so ``backend="gpu"`` in a
  worker is its own device), the CPU watershed running in that worker's threads.

Memory stays bounded: at most ``2 × (worker threads)`` frames are in flight; each
task holds one frame; nothing but records comes back.

Speed (issue 6): on a distributed worker a task leaves its thread's slot once its
frame is segmented (`distributed.secede`) and writes the frame while the slot
segments the next one, as the serial loop's background writer does
(`OVERLAP_WRITES`); and it undoes the cost of the ``MALLOC_TRIM_THRESHOLD_`` the
nanny starts workers with (`_tune_malloc`), which made `segment_frame` twice as
slow in a worker as in a plain process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

log = logging.getLogger("livedead_gpu")

__all__ = ["LEAN", "LOCAL_SCHEDULERS", "connect", "export_frames", "gpu_count", "local_cluster"]

#: The dask config of the local clusters this package starts (`local_cluster`)
LEAN = {
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "200ms",
}

#: Dask's local (single-machine, no `distributed`) schedulers
LOCAL_SCHEDULERS = ("synchronous", "sync", "threads", "processes")


def gpu_count() -> int:
    """CUDA devices CuPy sees (0 without CuPy or without a device)."""
    try:
        import cupy
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:   # no CuPy, no driver, no device
        return 0


@contextlib.contextmanager
def connect(scheduler=None, workers: int | None = None, gpus=None, threads_per_worker: int = 1,
            memory_limit="auto", timeout: float = 10.0):
    """What `export_plate` runs its frames on, as a context manager.

    Parameters
    ----------
    scheduler : None, {"synchronous", "threads", "processes", "local"}, str or Client
        None with neither ``workers`` nor ``gpus``: yields None (the serial loop).
        A local scheduler name: yields that name (Dask's local schedulers).
        ``"local"`` (or None with ``workers``): starts a `distributed.LocalCluster`.
        Any other string is a scheduler address (``tcp://10.0.0.5:8786``): connects
        to that cluster. A `distributed.Client` is used as it is.
    workers : int, optional
        Worker processes of a local cluster (default: one per core), or threads /
        processes of a local scheduler.
    gpus : {"auto"} or int, optional
        Start a `dask_cuda.LocalCUDACluster` with one worker per GPU ("auto": every
        GPU seen; N: the first N), of those ``CUDA_VISIBLE_DEVICES`` allots when set.
    threads_per_worker : int
        Threads of each worker of a local (CUDA) cluster.
    memory_limit : str or int
        Per-worker memory limit of a local cluster (distributed's spilling, pausing
        and restarting start from it).
    timeout : float
        Seconds to wait for a scheduler address to answer.

    Yields
    ------
    None, str or distributed.Client

    Raises
    ------
    ValueError
        A bad ``workers`` or ``gpus``, or ``gpus`` with a scheduler address.
    RuntimeError
        ``distributed`` or ``dask_cuda`` not installed, no GPU for ``gpus``, or a
        scheduler address that does not answer within ``timeout``.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if gpus is not None:
        if scheduler is not None:
            raise ValueError(f"gpus={gpus!r} starts a local CUDA cluster; it cannot go with scheduler={scheduler!r}")
        with _cuda_cluster(gpus, threads_per_worker, memory_limit) as client:
            yield client
        return
    if scheduler is None and workers is None:
        yield None
        return
    if scheduler in LOCAL_SCHEDULERS:
        import dask

        with dask.config.set(num_workers=workers) if workers else contextlib.nullcontext():
            yield "synchronous" if scheduler == "sync" else scheduler
        return
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is None or scheduler == "local":
        cluster = local_cluster(workers or os.cpu_count() or 1, threads_per_worker, memory_limit)
        with cluster, distributed.Client(cluster) as client:
            yield client
        return
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be None, a name, an address or a distributed.Client, got {scheduler!r}")
    try:
        # Parsed first: a Client made of a typo ("thread") is left half-built, and a later
        # Client of this process could then fail on an AssertionError of distributed's.
        from distributed.comm.addressing import parse_address, parse_host_port

        scheme, location = parse_address(scheduler)
        if scheme in ("tcp", "tls", "ws", "wss", "ucx"):
            parse_host_port(location)
    except ValueError as e:  # not an address at all ("missing port number in address ...")
        raise ValueError(f"scheduler {scheduler!r} is neither a local scheduler "
                         f"({', '.join(sorted(LOCAL_SCHEDULERS))}, local) nor an address: {e}") from None
    # Made on a thread of its own, waited for a little past the timeout: a listener that
    # accepts and never answers (an HTTP port) held distributed's handshake past it.
    made = {}

    def make():
        try:
            made["client"] = distributed.Client(scheduler, timeout=timeout)
        except BaseException as e:   # handed to the caller below
            made["error"] = e

    maker = threading.Thread(target=make, name="livedead-connect", daemon=True)
    maker.start()
    maker.join(timeout + 5)
    error = made.get("error")
    if isinstance(error, ValueError):
        raise ValueError(f"scheduler {scheduler!r}: {error}") from None
    if maker.is_alive() or error is not None:
        # OSError/TimeoutError: nothing there; MemoryError and the like: something that is no
        # Dask scheduler answered (an ssh port's greeting read as a message length).
        why = f"{type(error).__name__}: {error}" if error is not None else "no answer"
        raise RuntimeError(f"scheduler {scheduler!r} did not answer as a Dask scheduler within {timeout:g} s "
                           f"({why}); is one running there? (`dask scheduler` starts one)") from None
    with made["client"] as client:
        yield client


def local_cluster(workers: int, threads_per_worker: int = 1, memory_limit="auto"):
    """A `distributed.LocalCluster` of ``workers`` processes for frame tasks.

    Lean on the cores the frames need (`LEAN`): its workers run without
    distributed's statistical profiler, which samples every thread's stack every
    10 ms (a few % of a core per worker, for a dashboard panel a plate run does not
    need), and its scheduler without work stealing (the frames are fed a few per
    thread at a time, so there is no queue to rebalance) and with its system
    monitor and event-loop tick at 2 s and 200 ms instead of 0.5 s and 20 ms. The
    driver process hosting the scheduler used 0.54–0.63 CPU-s per 48-frame plate
    without these settings, 0.34–0.38 with them (`benchmarks/README.md`).
    """
    import dask

    distributed = _import_distributed()
    # The nanny hands its config to the worker it spawns: set it around their creation.
    with dask.config.set(LEAN):
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                                        memory_limit=memory_limit, dashboard_address=":0")


@contextlib.contextmanager
def _cuda_cluster(gpus, threads_per_worker, memory_limit):
    if gpus == "auto":
        n = None
    elif isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be 'auto' or an int >= 1, got {gpus!r}")
    else:
        n = gpus
    try:
        import dask_cuda
    except ImportError:
        raise RuntimeError(f"gpus={gpus!r} needs dask-cuda: pip install dask-cuda, or in the livedead-gpu "
                           "checkout pip install -e '.[gpu-cu12]' (or '.[gpu-cu13]'), which brings it") from None
    seen = gpu_count()
    if seen == 0:
        raise RuntimeError(f"gpus={gpus!r} but CuPy sees no CUDA device")
    if n is not None and n > seen:
        raise ValueError(f"gpus={n} but only {seen} CUDA device(s) are visible")
    distributed = _import_distributed()
    # One worker per device, each seeing its own GPU as device 0. dask-cuda reads the devices
    # from CUDA_VISIBLE_DEVICES itself (ids or GPU-/MIG- UUIDs, as a batch scheduler allots
    # them) and takes the first n; a list of our own would name physical GPUs 0..n-1.
    cluster = dask_cuda.LocalCUDACluster(n_workers=n, threads_per_worker=threads_per_worker,
                                         memory_limit=memory_limit, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        yield client


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise RuntimeError("this scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    return distributed


# --------------------------------------------------------------------------- one frame, on a worker


#: On a distributed cluster, a frame task leaves its worker thread's slot once the frame
#: is segmented and writes it (zlib, fsync: ~half of a frame's time, mostly outside the
#: GIL) while that slot segments the worker's next frame: the serial loop's background
#: writer, the Dask way. A worker thread then keeps up to two cores busy, as the serial
#: loop does; set False for one core per worker thread (a task holds its slot to the end).
#: The frames in flight stay bounded by the submission window (2 × worker threads).
OVERLAP_WRITES = True

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: bounds of the mmap threshold set below (32 MiB: the most glibc takes, and its dynamic ceiling)
_MMAP_MIN, _MMAP_MAX = 128 * 2**10, 32 * 2**20
# This process's state: "off" (None: not looked at yet; True: leave malloc alone), "mallopt"
# (the function), "mmap" (the mmap threshold set so far, 0 for none).
_malloc = {"off": None, "mallopt": None, "mmap": 0}
_malloc_lock = threading.Lock()


def _malloc_off() -> bool:
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return True   # glibc's dynamic thresholds are on, or someone chose the mmap threshold
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except Exception:   # not glibc (no mallopt), or no C library to load
        return True
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _malloc["mallopt"] = mallopt
    return False


def _tune_malloc(pixels: int) -> bool:
    """Undo, in this worker process, the cost of the malloc setting Dask's nanny starts workers with.

    distributed's nanny spawns every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
    (config ``distributed.nanny.pre-spawn-environ``). Setting it also switches off
    glibc's dynamic mmap threshold, which then stays at 128 KiB: every NumPy / OpenCV
    temporary of a frame is a fresh ``mmap`` whose pages fault in one by one and go
    back to the kernel on ``free``. `segment_frame` took 2x as long there (217-238 ms
    and 55,000-62,000 page faults per 1024² frame, against 106-115 ms and at most ~2,000
    in a plain process or after this). glibc's dynamic tuning would raise the mmap threshold to
    the largest block freed (and the trim threshold to twice that); this does so ahead
    of time for frames of ``pixels`` pixels: mmap threshold 16 bytes a pixel (two
    float64 planes), at most 32 MiB, trim threshold twice that. Thresholds only grow,
    as glibc's do. Nothing is changed where the variable is not set (glibc's dynamic
    thresholds are on), where ``MALLOC_MMAP_THRESHOLD_`` is set (someone chose), or
    without glibc's ``mallopt``. Returns whether the thresholds are this function's.
    """
    with _malloc_lock:
        if _malloc["off"] is None:
            _malloc["off"] = _malloc_off()
        if _malloc["off"]:
            return False
        want = min(_MMAP_MAX, max(_MMAP_MIN, 16 * int(pixels)))
        if want > _malloc["mmap"]:
            mallopt = _malloc["mallopt"]
            if mallopt(_M_MMAP_THRESHOLD, want) != 1 or mallopt(_M_TRIM_THRESHOLD, 2 * want) != 1:
                _malloc["off"] = True
                return False
            _malloc["mmap"] = want
            log.debug("worker %d: malloc mmap threshold %d, trim threshold %d (MALLOC_TRIM_THRESHOLD_=%s)",
                      os.getpid(), want, 2 * want, os.environ["MALLOC_TRIM_THRESHOLD_"])
        return True


def _frame_task(plate, key, out, params, backend, digest, options, sig, opencv_threads, secede=False):
    """Read, segment and write one frame; return ``(key, record, None)`` or ``(key, None, error)``.

    ``secede``: on a distributed worker, leave the worker's thread pool once the frame
    is segmented (`distributed.secede`), so that the worker starts segmenting its next
    frame while this one is compressed and written (see `OVERLAP_WRITES`).
    """
    from .backends import get_backend
    from .export import _as_uint16, _in_turn, _segment_saying_which, _write_frame
    from .io.plate import PlateError
    from .io.training import frame_stem

    if opencv_threads is not None:
        import cv2
        cv2.setNumThreads(opencv_threads)
    try:
        frame = plate.read(key)
        _tune_malloc(frame.brightfield.size)
        result = _segment_saying_which(frame, params, _in_turn(get_backend(backend)))
        image = _as_uint16(frame.stack(), frame.sources)
    except (PlateError, ValueError, TypeError, OSError) as e:
        return key, None, e
    if secede:
        import distributed

        distributed.secede()
    record = _write_frame(out, frame_stem(*key), key, frame, image, result, digest, options, sig)
    return key, record, None


def export_frames(plate, keys, kept, out, params, backend, digest, options, summary, records, on_error,
                  progress, scheduler, opencv_threads=None):
    """The frame loop of `export_plate` on Dask (see the module notes).

    Fills ``summary`` (written, resumed, failed) and ``records`` as the serial loop
    does, ``kept`` (key -> record) being the frames done before; the caller holds
    the output folder's lock and writes the manifest.
    """
    from .export import _forget, _frame_error, _source_signature
    from .io.training import frame_stem

    todo = []
    for key in keys:
        stem = frame_stem(*key)
        if key in plate.problems:
            summary.failed.append((key, plate.problems[key]))
            _forget(out, stem)
            continue
        if key in kept:
            records[key] = kept[key]
            summary.resumed.append(key)
        else:
            todo.append((key, _source_signature(plate, key)))
    args = (out, params, backend, digest, options)
    from .export import progress_bar

    bar = progress_bar(len(todo), progress)

    def report(key, status):
        bar.update(1)
        bar.set_postfix_str(f"{key.well} s{key.site} t{key.time} {status}", refresh=False)

    def take(key, rec, error):
        if error is None:
            records[key] = rec
            summary.written.append(key)
            report(key, "written")
            return
        if on_error == "raise":
            raise _frame_error(plate, key, error) from error
        summary.failed.append((key, str(error)))
        _forget(out, frame_stem(*key))
        report(key, "failed")

    try:
        if isinstance(scheduler, str):
            _run_local(plate, todo, args, scheduler, opencv_threads, take)
        else:
            _run_distributed(plate, todo, args, scheduler, opencv_threads, take, OVERLAP_WRITES)
    finally:
        bar.close()
    summary.written.sort()
    summary.failed.sort()
    # A worker killed while writing leaves its temporary behind (the frame itself was
    # redone elsewhere); no task of this run is running any more.
    from .io import atomic
    for p in atomic.remove_partials(out):
        log.info("removed %s, left by a worker that died", p)


def _run_local(plate, todo, args, scheduler, opencv_threads, take):
    import dask

    if not todo:
        return
    shared = dask.delayed(plate, pure=False)   # one graph node, not one copy per task
    task = dask.delayed(_frame_task, pure=False)
    tasks = [task(shared, key, *args, sig, opencv_threads) for key, sig in todo]
    # The records are small; each task holds one frame while it runs.
    for key, rec, error in dask.compute(*tasks, scheduler=scheduler):
        take(key, rec, error)


def _same(x):
    return x


#: seconds a run stopped by an error waits for the frames in flight on a cluster to finish
STOP_WAIT_S = 600


def _run_distributed(plate, todo, args, client, opencv_threads, take, overlap):
    distributed = _import_distributed()

    if not todo:
        return
    threads = sum(client.nthreads().values()) or 1
    # Frames in flight (segmenting, or writing after seceding): bounded memory on workers and
    # scheduler, and with OVERLAP_WRITES a worker thread's next frame is there when it is free.
    window = 2 * threads
    # The plate (its file lists) travels once, as a task: recomputed if a worker holding it dies.
    plate_f = client.submit(_same, plate, pure=False)
    pending = iter(todo)
    futures = distributed.as_completed()
    submitted = set()   # in flight: cancelled if the run stops

    def submit_next():
        item = next(pending, None)
        if item is not None:
            key, sig = item
            future = client.submit(_frame_task, plate_f, key, *args, sig, opencv_threads, overlap,
                                   pure=False, key=f"livedead-frame-{key.well}-{key.site}-{key.time}-"
                                                   f"{os.urandom(4).hex()}")
            submitted.add(future)
            futures.add(future)

    for _ in range(window):
        submit_next()
    try:
        for future in futures:
            key, rec, error = future.result()
            submitted.discard(future)
            future.release()
            take(key, rec, error)
            submit_next()
    except Exception:
        # An error stops the run: no frame starts now, and those in flight (at most the window)
        # finish, whole and recorded, before the caller releases the output's lock; cancelled,
        # a task that had seceded to write kept writing after the run had returned.
        distributed.wait(list(submitted), timeout=STOP_WAIT_S)
        for future in list(submitted):
            if future.status == "finished":
                key, rec, error = future.result()
                if error is None:
                    take(key, rec, None)
        client.cancel([f for f in submitted if f.status != "finished"])
        raise
    except BaseException:
        client.cancel(list(submitted))   # Ctrl-C: the frames still running or queued; the written ones stay done
        raise
