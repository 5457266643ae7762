"""The model's mean face as a crop position map: the mean-face baseline's prediction and the
reference map of the `mean_offset` target representation (prn_jax.representation).

The mean face, frontal (no rotation), is placed in the crop exactly as the ground-truth crop rule
places a face: its own 68 keypoints give the box, the 1.6 rule gives the crop.
"""

from __future__ import annotations

import numpy as np

from prn_jax.geometry import crop, mesh_io
from prn_jax.geometry import uv_assets as uv_assets_lib

BASELINE_FACE_PX = 200.0  # mean face keypoint box size before cropping (avoids int() effects)


def _to_image_frame(points: np.ndarray, kpts: np.ndarray) -> np.ndarray:
    """Flip y and/or z of a frontal face (P, 3) so that y points down (eyes above the mouth) and z
    toward the camera (nose tip nearer than the jaw corners); landmarks kpts (68, 3) decide."""
    sign = np.ones(3)
    if kpts[36:48, 1].mean() > kpts[48:68, 1].mean():
        sign[1] = -1.0
    if kpts[30, 2] < kpts[[0, 16], 2].mean():
        sign[2] = -1.0
    return points * sign


def mean_face_crop_map(
    frontal_map: np.ndarray, assets: uv_assets_lib.UVAssets, crop_scale: float = crop.LANDMARK_SCALE
) -> np.ndarray:
    """The baseline map: a frontal face placed in the crop by the ground-truth crop rule.

    Args:
      frontal_map: (S, S, 3) position map of a frontal mean face, any units; y up or down and z
        toward or away from the camera are detected from the landmarks and normalised.
      assets: UV assets at S.
      crop_scale: the evaluation crop rule's box enlargement.

    Returns:
      (S, S, 3) float32 crop pixels (min z 0 over the face mask, zeros outside it).
    """
    size = assets.size
    frontal = np.asarray(frontal_map, np.float64).reshape(-1, 3)
    kpts = mesh_io.landmarks_from_position_map(np.asarray(frontal_map, np.float64), assets.kpt_uv)
    frontal = _to_image_frame(frontal, kpts)
    kpts = _to_image_frame(kpts, kpts)
    box = crop.box_from_keypoints(kpts, truncate=False)
    frontal *= BASELINE_FACE_PX / ((box[2] - box[0] + box[3] - box[1]) / 2)
    kpts *= BASELINE_FACE_PX / ((box[2] - box[0] + box[3] - box[1]) / 2)
    transform = crop.crop_from_keypoints(kpts[None], size, scale=crop_scale, truncate=False)[0]
    face = frontal[assets.face_indices]
    cropped = crop.crop_vertices(face, transform)
    out = np.zeros((size * size, 3), np.float32)
    out[assets.face_indices] = cropped
    return out.reshape(size, size, 3)
