"""Reading and writing files: nothing here knows about stages or backends."""

from .atomic import atomic_write_text, write_tiff

__all__ = ["atomic_write_text", "write_tiff"]
