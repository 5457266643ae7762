"""The mean-face baseline ("learned nothing").

Baseline ("learned nothing"): the morphable model's mean face, frontal (no rotation), placed
in the crop exactly as the ground-truth crop rule places a face: its own 68 keypoints give the
box, the 1.6 rule gives the crop. The map is the same for every image, so after uncropping the
face sits in each image's ground-truth crop box with only scale and translation from that box.
"""

from __future__ import annotations

import numpy as np

from prn_jax.geometry.mean_face import mean_face_crop_map
from prn_jax.inference import PredictFn

__all__ = ["BASELINE_NAME", "constant_predictor", "mean_face_crop_map"]

BASELINE_NAME = "Baseline: mean face in GT crop"


def constant_predictor(crop_map: np.ndarray) -> PredictFn:
    """A `predict_fn` that returns the same (S, S, 3) crop-pixel map for every crop."""
    crop_map = np.asarray(crop_map, np.float32)

    def predict(crops: np.ndarray) -> np.ndarray:
        return np.broadcast_to(crop_map, (len(crops),) + crop_map.shape).copy()

    return predict
