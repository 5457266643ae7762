"""Square face crops: box from keypoints or a detector box, the similarity to an S x S crop,
applying it to vertices, and the inverse (uncrop) for predictions.

A crop transform is a (..., 3, 3) homogeneous 2D similarity from image pixels to crop pixels.
x, y go through it; z is multiplied by its scale sqrt(|det A|) (for an unrotated crop this
equals face3d's `tform.params[0, 0]`). Works on numpy or JAX arrays.
"""

from prn_jax.geometry import _array

TRAIN_SCALE = 1.5  # face3d ground-truth generation
LANDMARK_SCALE = 1.6  # PRNet inference from landmarks
DETECTOR_SCALE = 1.58  # PRNet inference from a dlib box
DETECTOR_SHIFT_Y = 0.14  # ... with the centre moved down by 0.14 * old_size


def box_from_keypoints(keypoints, truncate=True):
    """Tight box of 2D keypoints.

    Args:
      keypoints: (..., K, >=2) image pixels; only x, y are used.
      truncate: cast x, y to int32 first (face3d's `astype(np.int32)`, truncation toward 0).
    Returns:
      (..., 4) float (left, top, right, bottom).
    """
    xp = _array.namespace(keypoints)
    xy = keypoints[..., :2]
    if truncate:
        xy = xy.astype(xp.int32).astype(keypoints.dtype)
    return xp.concatenate([xy.min(axis=-2), xy.max(axis=-2)], axis=-1)


def crop_center_size(box, scale, shift_y=0.0, integer_size=True):
    """Centre and side of the square crop around a box (face3d / PRNet formula).

    centre = box centre + (0, shift_y * old_size), old_size = (w + h) / 2,
    size = int(old_size * scale) (truncated as in face3d and PRNet when integer_size).

    Args:
      box: (..., 4) (left, top, right, bottom) image pixels.
    Returns:
      centre (..., 2), size (...) in image pixels.
    """
    xp = _array.namespace(box)
    left, top, right, bottom = (box[..., i] for i in range(4))
    old_size = (right - left + bottom - top) / 2
    center = xp.stack([right - (right - left) / 2, bottom - (bottom - top) / 2 + shift_y * old_size], axis=-1)
    size = old_size * scale
    if integer_size:
        size = xp.floor(size)
    return center, size


def crop_similarity(center, size, out_size):
    """The similarity mapping box corners (cx -+ size/2, cy -+ size/2) to (0, 0) .. (S-1, S-1).

    Args:
      center: (..., 2), size: (...) image pixels. out_size: S, crop side in pixels.
    Returns:
      (..., 3, 3) image pixels -> crop pixels: scale k = (S-1)/size, x' = k (x - cx + size/2).
    """
    xp = _array.namespace(center, size)
    k = (out_size - 1) / size
    zero, one = xp.zeros_like(k), xp.ones_like(k)
    tx = -k * (center[..., 0] - size / 2)
    ty = -k * (center[..., 1] - size / 2)
    return xp.stack(
        [xp.stack([k, zero, tx], -1), xp.stack([zero, k, ty], -1), xp.stack([zero, zero, one], -1)], axis=-2
    )


def crop_from_keypoints(keypoints, out_size, scale=TRAIN_SCALE, truncate=True):
    """(..., 3, 3) crop transform from 68 keypoints (image pixels); see `crop_center_size`."""
    center, size = crop_center_size(box_from_keypoints(keypoints, truncate), scale)
    return crop_similarity(center, size, out_size)


def crop_from_detector_box(box, out_size, scale=DETECTOR_SCALE, shift_y=DETECTOR_SHIFT_Y):
    """(..., 3, 3) crop transform from a face-detector box (left, top, right, bottom)."""
    center, size = crop_center_size(box, scale, shift_y)
    return crop_similarity(center, size, out_size)


def similarity_scale(transform):
    """(...) the scale of a (..., 3, 3) similarity: sqrt(|det| of its 2x2 part)."""
    xp = _array.namespace(transform)
    a = transform[..., :2, :2]
    return xp.sqrt(xp.abs(a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]))


def apply_similarity(points, transform):
    """Points (..., n, 3) -> x, y through `transform` (..., 3, 3), z times its scale."""
    xp = _array.namespace(points, transform)
    transform = transform.astype(points.dtype)
    xy = points[..., :2] @ xp.swapaxes(transform[..., :2, :2], -1, -2) + transform[..., None, :2, 2]
    z = points[..., 2:] * similarity_scale(transform)[..., None, None]
    return xp.concatenate([xy, z], axis=-1)


def crop_vertices(vertices, transform, shift_z=True):
    """Image-pixel vertices (..., n, 3) -> crop pixels; z -= min z over the n vertices (face3d)."""
    cropped = apply_similarity(vertices, transform)
    if shift_z:
        xp = _array.namespace(cropped)
        z = cropped[..., 2:]
        cropped = xp.concatenate([cropped[..., :2], z - z.min(axis=-2, keepdims=True)], axis=-1)
    return cropped


def uncrop(points, transform):
    """Crop-pixel points (..., 3) (e.g. a whole (..., S, S, 3) map) -> original image pixels.

    x, y through the inverse similarity, z divided by the crop scale (PRNet); the z shift is
    not undone.
    Args:
      points: (..., 3); transform: (B..., 3, 3) whose batch axes lead those of `points`.
    """
    xp = _array.namespace(points, transform)
    inverse = xp.linalg.inv(transform)
    extra = points.ndim - 1 - (transform.ndim - 2)
    inverse = inverse.reshape(inverse.shape[:-2] + (1,) * extra + (3, 3)).astype(points.dtype)
    xy = (points[..., None, :2] * inverse[..., :2, :2]).sum(-1) + inverse[..., :2, 2]
    z = points[..., 2:] / similarity_scale(transform).reshape(
        transform.shape[:-2] + (1,) * (extra + 1)
    ).astype(points.dtype)
    return xp.concatenate([xy, z], axis=-1)
