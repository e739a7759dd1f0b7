"""Backends: where the array work of the segmentation runs.

``get_backend("cpu")`` is NumPy/OpenCV; ``"gpu"`` and ``"auto"`` are resolved here
too, so the rest of the package never imports a device library itself.
"""

from __future__ import annotations

import logging

from .base import Backend
from .cpu import CpuBackend

__all__ = ["Backend", "CpuBackend", "get_backend"]

log = logging.getLogger("livedead_gpu")


def _gpu_available() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # a CuPy without a driver raises CUDARuntimeError or worse
        return False


_auto_logged = False


def get_backend(backend="cpu") -> Backend:
    """Resolve a backend name (or pass a `Backend` through).

    Parameters
    ----------
    backend : {"cpu", "auto", "gpu"} or Backend
        "auto" takes the GPU when CuPy sees a device and logs the choice once.

    Raises
    ------
    ValueError
        An unknown name.
    RuntimeError
        "gpu" when no GPU backend can be built on this machine.
    """
    global _auto_logged
    if isinstance(backend, Backend):
        return backend
    if not isinstance(backend, str) or backend not in ("cpu", "auto", "gpu"):
        raise ValueError(f"backend must be 'cpu', 'auto', 'gpu' or a Backend, got {backend!r}")
    if backend == "cpu":
        return CpuBackend()
    if backend == "gpu":
        raise RuntimeError(
            "backend='gpu': the GPU backend is not part of this version yet; use backend='cpu'"
        )
    if not _auto_logged:
        seen = "a CUDA device is seen but no GPU backend is built yet" if _gpu_available() else "no CUDA device seen by CuPy"
        log.info("backend='auto': %s, using the CPU backend", seen)
        _auto_logged = True
    return CpuBackend()
