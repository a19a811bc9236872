"""Dense CRF (Kraehenbuehl and Koltun) through pydensecrf: a Gaussian and a bilateral pairwise term."""

from __future__ import annotations

import numpy as np


def dense_crf(image: np.ndarray, probabilities: np.ndarray, settings: dict) -> np.ndarray:
    """Refine (K, H, W) class probabilities with the colours of a (H, W, 3) uint8 image.

    `settings` is the config's `crf` section. Returns (K, H, W) float32 posteriors.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    num_labels, height, width = probabilities.shape
    if image.shape[:2] != (height, width):
        raise ValueError(f"image {image.shape[:2]} and probabilities {(height, width)} differ in size")
    probabilities = np.clip(probabilities.astype(np.float32), 1e-8, None)
    probabilities /= probabilities.sum(0, keepdims=True)
    crf = dcrf.DenseCRF2D(width, height, num_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probabilities)))
    crf.addPairwiseGaussian(sxy=settings["gaussian_sxy"], compat=settings["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=settings["bilateral_sxy"], srgb=settings["bilateral_srgb"],
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=settings["bilateral_compat"])
    posterior = crf.inference(settings["iterations"])
    return np.asarray(posterior, dtype=np.float32).reshape(num_labels, height, width)
