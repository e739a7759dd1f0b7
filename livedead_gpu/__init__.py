"""livedead_gpu: live/dead-assay microscopy frames to five-class U-Net training masks.

The article's method (block-max histogram threshold, Sobel cell area, watershed
cell separation), on the CPU (NumPy/OpenCV) or a GPU (CuPy/cuCIM).
"""

from .backends import Backend, get_backend
from .export import export_plate
from .io import open_plate, open_training_set
from .params import SegmentParams
from .pipeline import FrameResult, segment_frame
from .stages.classes import CLASS_NAMES

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "Backend",
    "FrameResult",
    "SegmentParams",
    "export_plate",
    "get_backend",
    "open_plate",
    "open_training_set",
    "segment_frame",
]
