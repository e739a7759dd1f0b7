"""Reading and writing files: nothing here knows about stages, backends or the pipeline.

- `atomic`: writes through a temporary name and a rename.
- `plate`: plates as imagers write them (Gen5/Cytation, ImageXpress, TCYX stacks),
  read lazily with tifffile.
- `training`: the training-set folder (TIFFs, records, manifest) and its reader.
"""

from .atomic import atomic_write, atomic_write_text, remove_partials, write_tiff
from .plate import (
    CHANNEL_ROLES,
    DEFAULT_CHANNEL_MAP,
    IMAGEXPRESS_CHANNEL_MAP,
    Frame,
    FrameKey,
    Plate,
    PlateError,
    open_plate,
    parse_channel_map,
)
from .training import MANIFEST_COLUMNS, TrainingSet, frame_stem, open_training_set, read_manifest

__all__ = [
    "CHANNEL_ROLES",
    "DEFAULT_CHANNEL_MAP",
    "IMAGEXPRESS_CHANNEL_MAP",
    "MANIFEST_COLUMNS",
    "Frame",
    "FrameKey",
    "Plate",
    "PlateError",
    "TrainingSet",
    "atomic_write",
    "atomic_write_text",
    "frame_stem",
    "open_plate",
    "open_training_set",
    "parse_channel_map",
    "read_manifest",
    "remove_partials",
    "write_tiff",
]
