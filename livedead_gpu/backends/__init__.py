"""Backends: where the array work of the segmentation runs.

``get_backend("cpu")`` is NumPy/OpenCV; ``"gpu"`` and ``"auto"`` are resolved here
too, so the rest of the package never imports a device library itself.
"""

from __future__ import annotations

import logging

from .base import Backend
from .cpu import CpuBackend

__all__ = ["Backend", "CpuBackend", "check_backend", "get_backend"]

log = logging.getLogger("livedead_gpu")


def _gpu_available() -> bool:
    try:
        import cupy
    except Exception:  # ImportError, or anything a broken CUDA install raises on import
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # a CuPy without a driver raises CUDARuntimeError or worse
        return False


_auto_logged = False


def check_backend(backend):
    """Refuse anything but a backend name `get_backend` knows or a `Backend`, loading nothing.

    For code that resolves the backend elsewhere (on Dask workers, whose devices
    the caller may not have).
    """
    if isinstance(backend, Backend):
        return
    if not isinstance(backend, str):   # a wrong type is a TypeError, as everywhere in the package
        raise TypeError(f"backend must be 'cpu', 'auto', 'gpu', 'gpu:N' or a Backend, got {type(backend).__name__} "
                        f"{backend!r}")
    device = backend[4:] if isinstance(backend, str) and backend.startswith("gpu:") else ""
    if not isinstance(backend, str) or not (
        backend in ("cpu", "auto", "gpu") or (device.isascii() and device.isdigit())  # not "gpu:²"
    ):
        raise ValueError(f"backend must be 'cpu', 'auto', 'gpu', 'gpu:N' or a Backend, got {backend!r}")


def get_backend(backend="cpu") -> Backend:
    """Resolve a backend name (or pass a `Backend` through).

    Parameters
    ----------
    backend : {"cpu", "auto", "gpu", "gpu:N"} or Backend
        "auto" takes the GPU when CuPy sees a device and logs the choice once;
        "gpu:N" pins device N.

    Raises
    ------
    ValueError
        An unknown name.
    TypeError
        Neither a name nor a `Backend`.
    RuntimeError
        "gpu" without CuPy/cuCIM installed (naming the pip extra) or without a device.
    """
    global _auto_logged
    if isinstance(backend, Backend):
        return backend
    check_backend(backend)
    if backend == "cpu":
        return CpuBackend()
    from .gpu import cupy_backend

    if backend.startswith("gpu"):
        return cupy_backend(int(backend[4:]) if ":" in backend else None)
    chosen = CpuBackend()
    if _gpu_available():
        try:
            chosen = cupy_backend()
        except Exception as e:   # a device, but no (working) cuCIM: "auto" is the GPU when it can run
            if not _auto_logged:
                log.warning("backend='auto': %s; using the CPU backend", e)
                _auto_logged = True
    if not _auto_logged:
        log.info("backend='auto': using the %s backend", chosen.name)
        _auto_logged = True
    return chosen
