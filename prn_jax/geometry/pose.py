"""Morphable-model fit -> vertices in image pixels (3DDFA pose convention, orthographic camera).

Works on numpy or JAX arrays (jit-able); leading batch axes broadcast.
"""

from prn_jax.geometry import _array


def rotation_matrix(angles):
    """3DDFA rotation R = Rx(pitch) @ Ry(yaw) @ Rz(roll).

    Args:
      angles: (..., 3) radians, (pitch, yaw, roll) = `Pose_Para[:3]`.
    Returns:
      (..., 3, 3) with Rx = [[1,0,0],[0,c,s],[0,-s,c]], Ry = [[c,0,-s],[0,1,0],[s,0,c]],
      Rz = [[c,s,0],[-s,c,0],[0,0,1]].
    """
    xp = _array.namespace(angles)
    cos, sin = xp.cos(angles), xp.sin(angles)
    one, zero = xp.ones_like(cos[..., 0]), xp.zeros_like(cos[..., 0])

    def matrix(rows):
        return xp.stack([xp.stack(row, axis=-1) for row in rows], axis=-2)

    cx, cy, cz = cos[..., 0], cos[..., 1], cos[..., 2]
    sx, sy, sz = sin[..., 0], sin[..., 1], sin[..., 2]
    rx = matrix([[one, zero, zero], [zero, cx, sx], [zero, -sx, cx]])
    ry = matrix([[cy, zero, -sy], [zero, one, zero], [sy, zero, cy]])
    rz = matrix([[cz, sz, zero], [-sz, cz, zero], [zero, zero, one]])
    return rx @ ry @ rz


def synthesize_vertices(mean, shape_basis, exp_basis, shape_para, exp_para):
    """Model-space vertices mean + shape_basis @ shape_para + exp_basis @ exp_para.

    Args:
      mean: (n, 3). shape_basis: (n, 3, ks). exp_basis: (n, 3, ke).
      shape_para: (..., ks) raw coefficients (`Shape_Para`). exp_para: (..., ke) (`Exp_Para`).
    Returns:
      (..., n, 3) in model units, same float dtype as the basis.
    """
    n = mean.shape[0]
    # (..., k) @ (k, 3n): one GEMM per basis with the batch as rows; BLAS reads the transposed
    # C-contiguous basis in place.
    flat = (
        shape_para.astype(shape_basis.dtype) @ shape_basis.reshape(3 * n, -1).T
        + exp_para.astype(exp_basis.dtype) @ exp_basis.reshape(3 * n, -1).T
    )
    return flat.reshape(flat.shape[:-1] + (n, 3)) + mean


def split_pose(pose_para):
    """(..., 7) `Pose_Para` -> angles (..., 3) rad, translation (..., 3), scale (...)."""
    return pose_para[..., :3], pose_para[..., 3:6], pose_para[..., 6]


def transform_vertices(vertices, pose_para):
    """s * V R^T + t (3DDFA): model units -> camera frame in pixels, y up.

    Args:
      vertices: (..., n, 3). pose_para: (..., 7) = [pitch, yaw, roll, tx, ty, tz, scale].
    """
    angles, translation, scale = split_pose(pose_para)
    rot = rotation_matrix(angles).astype(vertices.dtype)
    xp = _array.namespace(vertices, pose_para)
    rotated = vertices @ xp.swapaxes(rot, -1, -2)
    return (scale[..., None, None] * rotated + translation[..., None, :]).astype(vertices.dtype)


def to_image(vertices, image_height):
    """Orthographic projection to image pixels: keeps x and z, y -> h - y - 1 (y down).

    Args:
      vertices: (..., n, 3) camera-frame pixels (y up). image_height: h in pixels.
    Returns:
      (..., n, 3) image pixels, x right, y down, z toward the camera (not flipped).
    """
    xp = _array.namespace(vertices)
    y = image_height - vertices[..., 1] - 1
    return xp.stack([vertices[..., 0], y, vertices[..., 2]], axis=-1)


def fit_to_image_vertices(model, shape_para, exp_para, pose_para, image_height):
    """Full face3d chain for a 300W-LP / AFLW2000-3D fit: (..., n, 3) image-pixel vertices."""
    vertices = synthesize_vertices(model.mean, model.shape_basis, model.exp_basis, shape_para, exp_para)
    return to_image(transform_vertices(vertices, pose_para), image_height)
