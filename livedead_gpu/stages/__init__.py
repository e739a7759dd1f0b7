"""One module per stage of the article's method; each calls only the backend interface."""

from .cell_area import CellArea, cell_area, closed_area
from .classes import class_mask
from .gradient import (
    dim_edges,
    frame_padding,
    gradient_scale,
    noise_threshold,
    quantize,
    smoothed_gradient,
    sobel_magnitude,
)
from .nuclei import (
    Nuclei,
    contrast_mask,
    dead_by_ratio,
    draq7_background,
    find_nuclei,
    merge_pieces,
    nuclei,
    nucleus_mask,
    split_nuclei,
)
from .separation import separate_cells
from .threshold import block_max_threshold, threshold_value

__all__ = [
    "CellArea",
    "Nuclei",
    "block_max_threshold",
    "cell_area",
    "class_mask",
    "closed_area",
    "gradient_scale",
    "contrast_mask",
    "dead_by_ratio",
    "dim_edges",
    "draq7_background",
    "find_nuclei",
    "frame_padding",
    "merge_pieces",
    "nuclei",
    "noise_threshold",
    "nucleus_mask",
    "quantize",
    "separate_cells",
    "smoothed_gradient",
    "split_nuclei",
    "sobel_magnitude",
    "threshold_value",
]
