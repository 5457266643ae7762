"""Training targets: a batch of morphable-model fits -> UV position maps in crop pixels.

The face3d chain (vertices, 3DDFA pose, y flip, keypoint crop, z scale and shift, UV
rasterisation) with the per-sample work reduced to one GEMM, one 3x3 affine per vertex and
one gather: pose, flip and crop are all affine, so they are composed into a single (3, 3)
matrix + offset per sample; the raster is precomputed (`uv_raster.build_uv_raster`).
"""

import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from prn_jax.geometry import _array, crop, pose, uv_raster


def fit_to_crop_vertices(
    mean,
    shape_basis,
    exp_basis,
    kpt_ind,
    shape_para,
    exp_para,
    pose_para,
    image_height,
    out_size,
    crop_scale=crop.TRAIN_SCALE,
):
    """Vertices of a batch of fits in S x S crop pixels (numpy or JAX arrays).

    Args:
      mean, shape_basis, exp_basis, kpt_ind: the FaceModel fields.
      shape_para: (..., ks), exp_para: (..., ke), pose_para: (..., 7) (`Pose_Para`).
      image_height: h of the original image in pixels (450 for 300W-LP).
      out_size: S. crop_scale: box enlargement (1.5 face3d training, 1.6 evaluation).
    Returns:
      vertices (..., n, 3) float32 crop pixels (x right, y down, z toward camera, min z = 0) and
      the crop transform (..., 3, 3) image -> crop pixels.
    """
    xp = _array.namespace(shape_basis, shape_para, exp_para, pose_para)
    vertices = pose.synthesize_vertices(mean, shape_basis, exp_basis, shape_para, exp_para)
    keypoints = pose.to_image(pose.transform_vertices(vertices[..., kpt_ind, :], pose_para), image_height)
    transform = crop.crop_from_keypoints(keypoints, out_size, crop_scale)
    # image = flip(s R V + t); cropped = diag(A, k) image + (b, 0)  =>  cropped = M V + c.
    angles, translation, scale = pose.split_pose(pose_para)
    flip = xp.asarray([1.0, -1.0, 1.0], dtype=vertices.dtype)
    k = crop.similarity_scale(transform)
    zeros = xp.zeros_like(k)
    crop3 = xp.stack(
        [
            xp.concatenate([transform[..., 0, :2], zeros[..., None]], -1),
            xp.concatenate([transform[..., 1, :2], zeros[..., None]], -1),
            xp.stack([zeros, zeros, k], -1),
        ],
        axis=-2,
    )
    linear = (scale[..., None, None] * crop3 * flip[None, :]) @ pose.rotation_matrix(angles)
    image_offset = translation * flip + xp.asarray([0.0, image_height - 1.0, 0.0])
    offset = (crop3 @ image_offset[..., None])[..., 0]
    offset = offset + xp.concatenate([transform[..., :2, 2], zeros[..., None]], -1)
    cropped = vertices @ xp.swapaxes(linear, -1, -2).astype(vertices.dtype) + offset[..., None, :].astype(
        vertices.dtype
    )
    z = cropped[..., 2:]
    cropped = xp.concatenate([cropped[..., :2], z - z.min(axis=-2, keepdims=True)], axis=-1)
    return cropped, transform


def fit_to_position_maps(
    model, raster, shape_para, exp_para, pose_para, image_height, crop_scale=crop.TRAIN_SCALE, matrix=None
):
    """Numpy: batch of fits -> position maps (B, S, S, 3) float32 and crop transforms (B, 3, 3).

    Same result as rendering `fit_to_crop_vertices`, arranged for one CPU core: vertices are
    kept batch-last (n, 3, B) so the synthesis is one GEMM per basis and the UV interpolation one
    sparse product for the whole batch; pose, flip and crop (affine, weights sum to 1) are
    applied to the interpolated map, and only the per-vertex z row is formed for the z shift.

    Args:
      model, raster: the FaceModel and its `UVRaster` at size S.
      shape_para (B, ks), exp_para (B, ke), pose_para (B, 7), image_height, crop_scale: as in
        `fit_to_crop_vertices`.
      matrix: optional precomputed `uv_raster.raster_matrix(raster, n)` (saves ~10 ms a call).
    """
    shape_para = np.asarray(shape_para, np.float32)
    exp_para = np.asarray(exp_para, np.float32)
    pose_para = np.asarray(pose_para, np.float64)
    n, batch = model.num_vertices, shape_para.shape[0]
    if matrix is None:
        matrix = uv_raster.raster_matrix(raster, n)
    vertices = (
        model.shape_basis.reshape(3 * n, -1) @ shape_para.T + model.exp_basis.reshape(3 * n, -1) @ exp_para.T
    ).reshape(n, 3, batch)
    vertices += model.mean[:, :, None]
    keypoints = np.moveaxis(vertices[model.kpt_ind], -1, 0)  # (B, 68, 3)
    linear, offset, transform = _composed_affine(keypoints, pose_para, image_height, raster.size, crop_scale)
    z = (vertices * linear[:, 2, :].T[None]).sum(1)  # (n, B) crop-scaled z before the shift
    offset[:, 2] = -z.min(0)  # z - min z: the offset cancels
    rendered = matrix @ vertices.reshape(n, 3 * batch)  # (S*S, 3B), columns (c, b)
    rendered = rendered.reshape(-1, 3, batch)
    maps = np.einsum("pcb,brc->bpr", rendered, linear.astype(np.float32), optimize=True)
    maps += offset[:, None, :].astype(np.float32) * raster.mask.reshape(1, -1, 1)
    return maps.reshape(batch, raster.size, raster.size, 3), transform


def _composed_affine(model_keypoints, pose_para, image_height, out_size, crop_scale):
    """(B, 3, 3) M, (B, 3) c with crop pixels = M V + c (z unshifted), and the crop transform."""
    keypoints = pose.to_image(pose.transform_vertices(model_keypoints, pose_para), image_height)
    transform = crop.crop_from_keypoints(keypoints, out_size, crop_scale).astype(np.float64)
    angles, translation, scale = pose.split_pose(pose_para)
    flip = np.array([1.0, -1.0, 1.0])
    crop3 = np.zeros((len(pose_para), 3, 3))
    crop3[:, :2, :2] = transform[:, :2, :2]
    crop3[:, 2, 2] = crop.similarity_scale(transform)
    linear = (scale[:, None, None] * crop3 * flip) @ pose.rotation_matrix(angles)
    offset = (crop3 @ (translation * flip + [0.0, image_height - 1.0, 0.0])[..., None])[..., 0]
    offset[:, :2] += transform[:, :2, 2]
    return linear, offset, transform.astype(np.float32)


class FitRenderArrays(NamedTuple):
    """The model and the dense UV raster at size S as arrays (a pytree), for
    `position_maps_from_fits` on a device: mean (n, 3), shape_basis (n, 3, ks), exp_basis
    (n, 3, ke) float32 model units; vertex_ids (S*S, 3) int32, weights (S*S, 3) float32 (zero
    outside the mask)."""

    mean: Any
    shape_basis: Any
    exp_basis: Any
    vertex_ids: Any
    weights: Any

    @property
    def size(self) -> int:
        """S, from the static shape of the raster."""
        return math.isqrt(self.vertex_ids.shape[0])


def fit_render_arrays(model, raster) -> FitRenderArrays:
    """numpy `FitRenderArrays` of a FaceModel and its UVRaster (place them with jax.device_put)."""
    ids, weights = raster.dense()
    return FitRenderArrays(
        model.mean.astype(np.float32),
        model.shape_basis.astype(np.float32),
        model.exp_basis.astype(np.float32),
        ids,
        weights,
    )


def make_fit_to_position_maps_jax(model, raster, image_height, crop_scale=crop.TRAIN_SCALE, device=None):
    """A jitted JAX `(shape_para, exp_para, pose_para) -> (maps, transforms)`.

    The model arrays and the dense raster are placed on `device` once and closed over.
    Inputs (B, ks), (B, ke), (B, 7); outputs (B, S, S, 3) float32, (B, 3, 3) float32.
    """
    arrays = jax.device_put(fit_render_arrays(model, raster), device)
    kpt_ind = jax.device_put(model.kpt_ind, device)

    @jax.jit
    def fit_to_maps(shape_para, exp_para, pose_para):
        with jax.default_matmul_precision("highest"):  # full float32 on GPU / TPU too (HIGHEST)
            vertices, transform = fit_to_crop_vertices(
                arrays.mean,
                arrays.shape_basis,
                arrays.exp_basis,
                kpt_ind,
                jnp.asarray(shape_para, jnp.float32),
                jnp.asarray(exp_para, jnp.float32),
                jnp.asarray(pose_para, jnp.float32),
                image_height,
                raster.size,
                crop_scale,
            )
        maps = uv_raster.render_position_maps_jax(vertices, arrays.vertex_ids, arrays.weights, raster.size)
        return maps, transform

    return fit_to_maps


# Every product of the on-device chain runs at full float32 precision: XLA's default float32 dot
# on NVIDIA GPUs rounds its inputs to TF32 (10-bit mantissa) and on TPUs to bfloat16 (7 bits),
# which moves the maps by ~0.1 px and ~1 px (image coordinates up to ~450 px times a 2x2
# similarity; tests/test_precision.py emulates it). The two GEMMs say so; the 3x3 affines are
# written element-wise (XLA never turns those into dots). CPUs ignore the setting.
HIGHEST = jax.lax.Precision.HIGHEST


def rotation_3ddfa(angles):
    """3DDFA R = Rx(pitch) Ry(yaw) Rz(roll) in closed form, element-wise (no dot): same
    matrix as `pose.rotation_matrix`. angles: (..., 3) radians -> (..., 3, 3)."""
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    cx, cy, cz = cos[..., 0], cos[..., 1], cos[..., 2]
    sx, sy, sz = sin[..., 0], sin[..., 1], sin[..., 2]
    rows = [
        [cy * cz, cy * sz, -sy],
        [sx * sy * cz - cx * sz, sx * sy * sz + cx * cz, sx * cy],
        [cx * sy * cz + sx * sz, cx * sy * sz - sx * cz, cx * cy],
    ]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def fit_crop_affine(pose_para, crop_transform, image_height):
    """pose, y flip and crop composed, element-wise: crop pixels = V @ linear^T + offset.

    Args:
      pose_para: (B, 7) `Pose_Para`. crop_transform: (B, 3, 3) image -> crop pixels.
      image_height: (B,) pixels.
    Returns:
      linear (B, 3, 3), offset (B, 3) float32: model units -> crop pixels, z not yet shifted
      (z' = k z_image with k the crop's scale sqrt|det A|).
    """
    angles, translation, scale = pose.split_pose(pose_para)
    a = crop_transform[:, :2, :2]
    k = jnp.sqrt(jnp.abs(a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]))
    zeros = jnp.zeros_like(k)
    # crop3 = [[A, 0], [0, k]] times the flip diag(1, -1, 1) on its columns, times s.
    flip = jnp.asarray([1.0, -1.0, 1.0], jnp.float32)
    crop3 = jnp.stack(
        [
            jnp.stack([a[:, 0, 0], a[:, 0, 1], zeros], -1),
            jnp.stack([a[:, 1, 0], a[:, 1, 1], zeros], -1),
            jnp.stack([zeros, zeros, k], -1),
        ],
        axis=-2,
    )
    left = scale[:, None, None] * crop3 * flip
    rotation = rotation_3ddfa(angles)
    linear = (left[:, :, :, None] * rotation[:, None, :, :]).sum(-2)  # left @ R, element-wise
    image_offset = translation * flip + jnp.stack([zeros, image_height - 1.0, zeros], -1)
    offset = (crop3 * image_offset[:, None, :]).sum(-1)  # crop3 @ image_offset
    offset = offset + jnp.stack([crop_transform[:, 0, 2], crop_transform[:, 1, 2], zeros], -1)
    return linear, offset


def position_maps_from_fits(
    arrays: FitRenderArrays, pose_para, shape_para, exp_para, crop_transform, image_height
):
    """Ground truth on the device: stored fits + crop transforms -> position maps (JAX, jit-able).

    The same chain as the prn_300w_lp builder (synthesis, 3DDFA pose, y flip, the stored crop
    similarity with z times its scale, z -= min z over all vertices, UV raster), but the crop
    comes from the record instead of being recomputed, so a new map size or UV layout needs
    only new `arrays`. Full float32 precision on every platform (`HIGHEST`): the synthesis GEMMs
    at Precision.HIGHEST, pose, flip and crop as one affine applied element-wise.

    Args:
      arrays: `FitRenderArrays` (S = arrays.size).
      pose_para (B, 7), shape_para (B, ks), exp_para (B, ke): the fit (`Pose_Para`, ...).
      crop_transform: (B, 3, 3) image pixels -> crop pixels. image_height: (B,) pixels.
    Returns:
      (B, S, S, 3) float32 crop pixels, zero outside the mask.
    """
    batch = pose_para.shape[0]
    n = arrays.mean.shape[0]
    chex.assert_shape(pose_para, (batch, 7))
    chex.assert_shape(shape_para, (batch, arrays.shape_basis.shape[-1]))
    chex.assert_shape(exp_para, (batch, arrays.exp_basis.shape[-1]))
    chex.assert_shape(crop_transform, (batch, 3, 3))
    chex.assert_shape(image_height, (batch,))
    dtype = arrays.shape_basis.dtype
    flat = jnp.dot(
        jnp.asarray(shape_para, dtype), arrays.shape_basis.reshape(3 * n, -1).T, precision=HIGHEST
    ) + jnp.dot(jnp.asarray(exp_para, dtype), arrays.exp_basis.reshape(3 * n, -1).T, precision=HIGHEST)
    vertices = flat.reshape(batch, n, 3) + arrays.mean  # (B, n, 3) model units
    linear, offset = fit_crop_affine(
        jnp.asarray(pose_para, jnp.float32),
        jnp.asarray(crop_transform, jnp.float32),
        jnp.asarray(image_height, jnp.float32),
    )
    linear, offset = linear.astype(dtype), offset.astype(dtype)
    cropped = (
        vertices[..., 0:1] * linear[:, None, :, 0]
        + vertices[..., 1:2] * linear[:, None, :, 1]
        + vertices[..., 2:3] * linear[:, None, :, 2]
        + offset[:, None, :]
    )
    z = cropped[..., 2:]
    cropped = jnp.concatenate([cropped[..., :2], z - z.min(axis=-2, keepdims=True)], axis=-1)
    return uv_raster.render_position_maps_jax(cropped, arrays.vertex_ids, arrays.weights, arrays.size)


class GroundTruthRenderer:
    """Fast numpy fit -> position map for one model and map size, for one CPU core.

    Same result as `fit_to_position_maps` (to float32 rounding), with the per-call set-up done
    once: the model is kept as one (1 + ks + ke, 3n) float32 basis (mean first), so the
    synthesis of a batch is a single GEMM (B, 1 + ks + ke) @ (1 + ks + ke, 3n) writing
    (B, n, 3) vertices into a reused buffer; that GEMM is the cost floor (about 73 MFLOP a
    sample). Then per sample: the composed pose/flip/crop affine (`_composed_affine`) applied
    to the vertices as one (n, 3) @ (3, 3) product plus offset, z shifted by its minimum over
    all vertices (face3d), and the UV raster's sparse matrix (Kronecker-expanded to the 3
    coordinates) applied to the flattened vertices, giving the (S*S, 3) map in output layout
    (rows sum to 1 at covered pixels, so the offset lands there; uncovered pixels stay 0).
    Holds (1 + ks + ke) * 3n * 4 bytes of basis (146 MB for the BFM).
    Not thread-safe (buffers are reused); the returned maps are fresh arrays.
    """

    def __init__(self, model, raster, image_height, crop_scale=crop.TRAIN_SCALE):
        n = model.num_vertices
        self._num_shape, self._num_exp = model.shape_basis.shape[2], model.exp_basis.shape[2]
        basis = np.empty((1 + self._num_shape + self._num_exp, n, 3), np.float32)
        basis[0] = model.mean
        basis[1 : 1 + self._num_shape] = np.moveaxis(model.shape_basis, -1, 0)
        basis[1 + self._num_shape :] = np.moveaxis(model.exp_basis, -1, 0)
        self._basis = basis.reshape(len(basis), 3 * n)
        self._kpt_ind = model.kpt_ind
        # (3 S*S, 3n): the raster matrix per coordinate, acting on interleaved (n, 3) vertices;
        # one single-vector CSR product a sample (faster in scipy than 3 right-hand sides).
        self._matrix = scipy.sparse.kron(
            uv_raster.raster_matrix(raster, n), scipy.sparse.identity(3), format="csr"
        ).astype(np.float32)
        self._size, self._num_vertices = raster.size, n
        self._image_height, self._crop_scale = image_height, crop_scale
        self._buffers = {}

    def _buffer(self, name, shape):
        if name not in self._buffers or self._buffers[name].shape != shape:
            self._buffers[name] = np.empty(shape, np.float32)
        return self._buffers[name]

    def __call__(self, shape_para, exp_para, pose_para):
        """Batch of fits -> position maps (B, S, S, 3) float32 and crop transforms (B, 3, 3).

        Args: shape_para (B, ks), exp_para (B, ke), pose_para (B, 7), as `fit_to_position_maps`.
        """
        batch, n = len(shape_para), self._num_vertices
        coefficients = self._buffer("coefficients", (batch, len(self._basis)))
        coefficients[:, 0] = 1.0
        coefficients[:, 1 : 1 + self._num_shape] = shape_para
        coefficients[:, 1 + self._num_shape :] = exp_para
        vertices = self._buffer("vertices", (batch, 3 * n))
        np.matmul(coefficients, self._basis, out=vertices)
        vertices = vertices.reshape(batch, n, 3)
        linear, offset, transform = _composed_affine(
            vertices[:, self._kpt_ind],
            np.asarray(pose_para, np.float64),
            self._image_height,
            self._size,
            self._crop_scale,
        )
        cropped = self._buffer("cropped", (batch, n, 3))
        np.matmul(vertices, np.swapaxes(linear, 1, 2).astype(np.float32), out=cropped)
        offset[:, 2] = -cropped[:, :, 2].min(axis=1)
        cropped += offset[:, None, :].astype(np.float32)  # weights sum to 1: masked offset
        maps = np.empty((batch, self._size * self._size, 3), np.float32)
        for sample in range(batch):
            maps[sample] = (self._matrix @ cropped[sample].reshape(-1)).reshape(-1, 3)
        return maps.reshape(batch, self._size, self._size, 3), transform
