"""The article's code, transcribed with its typos fixed and its bugs kept.

The baseline the benchmarks compare against (``../shared/seed`` is the source).
Typos fixed: ``courseness``, ``kernel_size_``/``kernelsize``, the missing colon of
``morphImage``, ``Hoechest_nucleus``, ``cell_labels``, ``image_sit``. Bugs kept on
purpose: the uint16 vote histogram, the wrapping uint16 gradient cast, the flood
from pixel (0, 0), the markers merging nucleus 1 into the background, the
watershed lines on the image frame. Not part of the package.
"""

import cv2
import numpy as np


def thresholdImage(image, offset, coarseness):
    xyDim = image.shape
    max_pix_hist = np.zeros(2**16, dtype="uint16")
    rc_i = np.array(
        [[r, c] for r in np.arange(start=0, stop=xyDim[0], step=coarseness)
         for c in np.arange(start=0, stop=xyDim[1], step=coarseness)],
        dtype="int",
    )
    rc_e = rc_i + coarseness
    for (ri, ci), (re, ce) in zip(rc_i, rc_e):
        imseg = image[ri:re, ci:ce]
        max_pix = np.max(imseg)
        max_pix_hist[max_pix] += 1
    k_segment = np.argmax(max_pix_hist[1:]) + 1
    if offset is None:
        thresholdValue = k_segment
    else:
        maxind = 1
        maxoffset = abs(k_segment - maxind) + 1
        thresholdValue = int(offset * maxoffset + maxind)
    return thresholdValue


def SobelGradient(image):
    sobelx = cv2.Sobel(image, cv2.CV_64F, 1, 0, ksize=3)
    sobely = cv2.Sobel(image, cv2.CV_64F, 0, 1, ksize=3)
    gradientImage = (sobelx**2 + sobely**2) ** 0.5
    return gradientImage.astype("uint16")


def morphImage(image, thresholdValue, kernel_size):
    ekernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    bwBf0 = np.greater(image, thresholdValue).astype("uint8")
    bwBf0 = cv2.dilate(bwBf0, ekernel, iterations=2)
    bwBf0 = cv2.erode(bwBf0, ekernel, iterations=2)
    _, _, mask, _ = cv2.floodFill(bwBf0.astype("uint8"), None, (0, 0), 0)
    bwBf0 = np.array(mask[1:-1, 1:-1] == 0, dtype="uint8")
    return bwBf0


def nucleusImage(image, thresholdValue, kernel_size=3):
    """The article's three nucleus steps (threshold, close); it prints no code for them."""
    ekernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    bw = np.greater(image, thresholdValue).astype("uint8")
    return cv2.morphologyEx(bw, cv2.MORPH_CLOSE, ekernel).astype(bool)


def segregate_cells(cell_area, draq7_nucleus, Hoechst_nucleus):
    liveandDead = draq7_nucleus | Hoechst_nucleus
    retval, labels = cv2.connectedComponents(liveandDead.astype("uint8"), ltype=cv2.CV_16U)
    markers = np.array(~cell_area, dtype="int32")
    markers += labels.astype("int32")
    neg_live = np.array(~liveandDead, dtype="uint8")
    nucleus_dist = cv2.distanceTransform(neg_live, cv2.DIST_L2, 5)
    nucleus_mask = np.clip(cell_area * nucleus_dist, a_min=0, a_max=255).astype("uint8")
    cell_area_labels = cv2.watershed(np.repeat(nucleus_mask[:, :, np.newaxis], 3, axis=2), markers)
    segmented_cells = cell_area_labels > 1
    segmented_outlines = cell_area_labels == -1
    return segmented_cells, segmented_outlines


def create_training_mask(segmented_cells, segmented_outlines, Hoechst_nucleus, draq7_nucleus):
    image_size = segmented_cells.shape
    maskImage = np.zeros((image_size), dtype="int64")
    maskImage[segmented_cells] = 1
    maskImage[segmented_outlines] = 2
    maskImage[Hoechst_nucleus] = 3
    maskImage[draq7_nucleus] = 4
    return maskImage


def article_cell_area(brightfield, offset=1.2, coarseness=16, kernel_size=5):
    """The article's cell-area steps: gradient, threshold, morph, flood (bool mask)."""
    gradient = SobelGradient(brightfield)
    return morphImage(gradient, thresholdImage(gradient, offset, coarseness), kernel_size).astype(bool)


def article_frame(brightfield, hoechst, draq7, offset=1.2, coarseness=16, kernel_size=5):
    """The article's whole frame, its functions composed as its text describes."""
    # ``~cell_area`` in segregate_cells needs a bool array: the article's
    # ``morphImage`` returns uint8, whose ``~`` would give 254/255.
    cell_area = article_cell_area(brightfield, offset, coarseness, kernel_size)
    ho = nucleusImage(hoechst, thresholdImage(hoechst, offset, coarseness))
    d7 = nucleusImage(draq7, thresholdImage(draq7, offset, coarseness))
    cells, outlines = segregate_cells(cell_area, d7, ho)
    return create_training_mask(cells, outlines, ho, d7)
