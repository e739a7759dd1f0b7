"""The pipeline a user would write with scikit-image instead of the article's code.

A baseline for the benchmark suite (`benchmarks/suite.py`), not package code: the
textbook steps, written plainly, with no tuning to the synthetic frames.

- cell area: ``filters.sobel`` of the brightfield, ``threshold_otsu`` of that
  gradient, a binary closing with a disk of radius 2, ``ndi.binary_fill_holes``;
- nuclei: ``threshold_otsu`` of Hoechst and of Draq7, holes filled, objects under
  ``min_nucleus_area`` px removed; the nuclei are the connected components of the
  union, dead when most of a nucleus lies in the Draq7 mask;
- separation: ``segmentation.watershed`` of the Sobel gradient from the nucleus
  markers, inside the cell area (nuclei included); outlines by
  ``segmentation.find_boundaries(mode="inner")``;
- classes: 1 cell, 2 outline, 3 live nucleus, 4 dead nucleus, painted in that order.

Each step is a function of its own so that the suite can time it as a stage;
`skimage_frame` composes them.
"""

from __future__ import annotations

import inspect

import numpy as np
import scipy.ndimage as ndi
from skimage import filters, measure, morphology, segmentation


def threshold(image):
    """Otsu's threshold: scikit-image's counterpart of the article's block-max threshold."""
    return filters.threshold_otsu(image)


def gradient(brightfield):
    """Sobel magnitude (float64; scikit-image scales integer images to [0, 1] first)."""
    return filters.sobel(brightfield)


def gradient_threshold(grad):
    return filters.threshold_otsu(grad)


def cell_area_mask(grad, thr, radius=2):
    """Threshold, close with a disk, fill holes."""
    mask = morphology.closing(grad > thr, morphology.disk(radius))
    return ndi.binary_fill_holes(mask)


def cell_area(brightfield, radius=2):
    grad = gradient(brightfield)
    return cell_area_mask(grad, gradient_threshold(grad), radius), grad


def _remove_small(mask, min_area):
    # scikit-image 0.26 renamed min_size (strictly smaller) to max_size (smaller or equal)
    if "max_size" in inspect.signature(morphology.remove_small_objects).parameters:
        return morphology.remove_small_objects(mask, max_size=min_area - 1)
    return morphology.remove_small_objects(mask, min_size=min_area)


def nucleus_mask(image, min_area=20):
    mask = ndi.binary_fill_holes(image > filters.threshold_otsu(image))
    return _remove_small(mask, min_area)


def nuclei(hoechst, draq7, min_area=20):
    """Nucleus labels (int32), the dead call per label (index 0 False), and both masks."""
    ho = nucleus_mask(hoechst, min_area)
    d7 = nucleus_mask(draq7, min_area)
    labels = measure.label(ho | d7).astype(np.int32)
    n = int(labels.max())
    dead = np.zeros(n + 1, bool)
    if n:
        dead[1:] = np.asarray(ndi.mean(d7, labels, np.arange(1, n + 1))) > 0.5
    return labels, dead, ho, d7


def separate(grad, area, labels):
    """Watershed of the gradient from the nuclei, inside the cell area: (cells, outlines)."""
    cells = segmentation.watershed(grad, markers=labels, mask=area | (labels > 0))
    outlines = segmentation.find_boundaries(cells, mode="inner")
    return cells, outlines


def classes(cells, outlines, labels, dead):
    out = np.zeros(cells.shape, np.uint8)
    out[cells > 0] = 1
    out[outlines] = 2
    nucleus = labels > 0
    is_dead = dead[labels]
    out[nucleus & ~is_dead] = 3
    out[nucleus & is_dead] = 4
    return out


def skimage_frame(brightfield, hoechst, draq7, radius=2, min_area=20):
    """The whole frame: a dict with ``classes``, ``cells``, ``nuclei``, ``dead``."""
    area, grad = cell_area(brightfield, radius)
    labels, dead, _, _ = nuclei(hoechst, draq7, min_area)
    cells, outlines = separate(grad, area, labels)
    return {"classes": classes(cells, outlines, labels, dead), "cells": cells, "nuclei": labels, "dead": dead}
