"""Training augmentation of (image, position map) pairs as pure JAX functions (docs/training.md).

PRNet (Feng et al. 2018) augments each 256x256 crop with
- one 2D similarity about the crop centre: rotation U(-45, 45) degrees, scale U(0.9, 1.2),
  translation U(-0.1 S, 0.1 S) per axis. The image is warped (bilinear, zeros outside); the
  position map is NOT warped: its x, y VALUES go through the same similarity and z is multiplied
  by the similarity's scale;
- a per-channel colour scale U(0.6, 1.4), clipped to [0, 1];
- synthetic occlusion: a noise-texture patch (rectangle or ellipse, random size, orientation and
  position) pasted onto the image; the target is unchanged (the network must infer what is hidden).

Frame everywhere: crop pixels, x right, y down, origin top-left, pixel centres at integer
coordinates (pixel (row v, column u) is the point x = u, y = v). Images are (S, S, 3) floats in
[0, 1]; position maps are (H, W, 3) floats in crop pixels, z toward the camera (H, W need not
equal S).

Sampling and applying are separate: `sample_draw` turns a PRNG key into an `ExampleDraw` (every
random number one example uses), `apply_draw` applies it. `augment_example_numpy` applies the same
draw on the host with numpy/scipy, for comparison and timing. Everything is jit-able and
vmap-able with the `AugmentParams` argument static (a hashable frozen dataclass). Coordinate
transforms are written element-wise (no dot), so they run in full float32 on GPUs and TPUs too,
whose default float32 dot precision is TF32 / bfloat16 (docs/ground_truth.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges and probabilities of the augmentation (hashable: pass it as a static argument).

    Attributes:
        enabled: master switch; False makes every augmentation the identity (evaluation).
        geometric: apply the similarity (image warp + position-map values).
        color: apply the per-channel colour scale.
        occlusion: apply synthetic occlusion (with probability `occlusion_prob`).
        rotation_deg: rotation from U(-rotation_deg, rotation_deg), degrees.
        translation_frac: translation per axis from U(-f S, f S), crop pixels.
        scale_range: (lo, hi) of the uniform scale about the crop centre.
        color_range: (lo, hi) of the uniform per-channel colour factor.
        occlusion_prob: probability that an example gets an occluding patch.
        occlusion_size_range: (lo, hi) of each patch axis' full length as a fraction of S (the two
            axes are drawn independently).
        occlusion_ellipse_prob: probability that the patch is an ellipse rather than a rectangle.
        occlusion_texture_cells: the patch texture is uniform noise on a grid of this many cells
            per side, bilinearly stretched over the patch.
    """

    enabled: bool = True
    geometric: bool = True
    color: bool = True
    occlusion: bool = True
    rotation_deg: float = 45.0
    translation_frac: float = 0.1
    scale_range: tuple[float, float] = (0.9, 1.2)
    color_range: tuple[float, float] = (0.6, 1.4)
    occlusion_prob: float = 0.5
    occlusion_size_range: tuple[float, float] = (0.1, 0.5)
    occlusion_ellipse_prob: float = 0.5
    occlusion_texture_cells: int = 8

    def __post_init__(self):
        for name in ("scale_range", "color_range", "occlusion_size_range"):
            value = getattr(self, name)
            if len(value) != 2 or not value[0] <= value[1]:
                raise ValueError(f"augment.{name} must be (lo, hi) with lo <= hi, got {value!r}")
        for name in ("occlusion_prob", "occlusion_ellipse_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if self.occlusion_size_range[0] <= 0:
            raise ValueError(
                f"augment.occlusion_size_range must be positive, got {self.occlusion_size_range!r}"
            )
        if self.occlusion_texture_cells < 2:
            raise ValueError(
                f"augment.occlusion_texture_cells must be >= 2, got {self.occlusion_texture_cells!r}"
            )

    @property
    def any_enabled(self) -> bool:
        return self.enabled and (self.geometric or self.color or self.occlusion)

    @classmethod
    def off(cls) -> AugmentParams:
        """All augmentation off (evaluation)."""
        return cls(enabled=False)

    @classmethod
    def from_config(cls, config: Any) -> AugmentParams:
        """Reads `config.augment` (an ml_collections.ConfigDict or a mapping).

        Fields carry the names of this dataclass; missing ones keep their defaults, unknown ones
        raise. Lists (command-line overrides) become tuples.
        """
        try:
            sub = config["augment"]
        except (KeyError, AttributeError, TypeError) as e:
            raise KeyError("config has no 'augment' sub-dict") from e
        sub = dict(sub.to_dict() if hasattr(sub, "to_dict") else sub)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(sub) - set(fields))
        if unknown:
            raise KeyError(f"config.augment: unknown field(s) {unknown}; known: {sorted(fields)}")
        kwargs = {}
        for name, value in sub.items():
            default = fields[name].default
            try:
                if isinstance(default, tuple):
                    kwargs[name] = tuple(float(v) for v in value)
                elif isinstance(default, bool) and not isinstance(value, bool):
                    raise TypeError
                else:
                    kwargs[name] = type(default)(value)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"config.augment.{name}: cannot read {value!r} as {type(default).__name__}"
                ) from e
        return cls(**kwargs)

    def to_config(self):
        """These parameters as an ml_collections.ConfigDict, for `config.augment` in configs."""
        import ml_collections

        return ml_collections.ConfigDict(dataclasses.asdict(self))


class Occlusion(NamedTuple):
    """One occluding patch, crop pixel units.

    apply: () bool, whether the patch is pasted at all.
    centre: (2,) float32, patch centre (x, y).
    half_size: (2,) float32, half-lengths along the patch's own two axes.
    angle: () float32, rotation of the patch axes from the x axis, radians.
    ellipse: () bool, ellipse if True, else rectangle.
    texture: (G, G, 3) float32 in [0, 1], noise grid stretched over the patch's bounding box.
    """

    apply: jax.Array
    centre: jax.Array
    half_size: jax.Array
    angle: jax.Array
    ellipse: jax.Array
    texture: jax.Array


class ExampleDraw(NamedTuple):
    """Every random quantity used to augment one example (leading batch axis when batched).

    similarity: (3, 3) float32 on homogeneous (x, y, 1), source crop pixels -> augmented crop.
    color_scale: (3,) float32 per-channel factors.
    occlusion: `Occlusion`.
    Disabled parts hold identity values (eye(3), ones, apply=False).
    """

    similarity: jax.Array
    color_scale: jax.Array
    occlusion: Occlusion


# ---------------------------------------------------------------------------------------- sampling


def sample_similarity(key: jax.Array, size: int, params: AugmentParams) -> jax.Array:
    """Random similarity of an S x S crop (S = `size`), source pixel -> augmented pixel.

    p' = s R(theta) (p - c) + c + t with c = ((S-1)/2, (S-1)/2), theta ~ U(-r, r) degrees
    (positive turns +x toward +y: clockwise on screen), s ~ U(scale_range), t ~ U(-f S, f S)^2.

    Returns:
        (3, 3) float32 homogeneous matrix.
    """
    k_rot, k_scale, k_shift = jax.random.split(key, 3)
    theta = jnp.deg2rad(
        jax.random.uniform(k_rot, (), minval=-params.rotation_deg, maxval=params.rotation_deg)
    )
    s = jax.random.uniform(k_scale, (), minval=params.scale_range[0], maxval=params.scale_range[1])
    t_max = params.translation_frac * size
    t = jax.random.uniform(k_shift, (2,), minval=-t_max, maxval=t_max)
    cos, sin = s * jnp.cos(theta), s * jnp.sin(theta)
    linear = jnp.stack([jnp.stack([cos, -sin]), jnp.stack([sin, cos])])
    centre = jnp.full((2,), (size - 1) / 2.0, jnp.float32)
    return _affine_matrix(linear, centre - _apply_linear(linear, centre) + t)


def sample_color_scale(key: jax.Array, params: AugmentParams) -> jax.Array:
    """(3,) float32 per-channel factors from U(color_range)."""
    return jax.random.uniform(key, (3,), minval=params.color_range[0], maxval=params.color_range[1])


def sample_occlusion(key: jax.Array, size: int, params: AugmentParams) -> Occlusion:
    """Random patch in an S x S crop, to be pasted with probability `occlusion_prob`."""
    k_apply, k_centre, k_size, k_angle, k_shape, k_tex = jax.random.split(key, 6)
    lo, hi = params.occlusion_size_range
    cells = params.occlusion_texture_cells
    return Occlusion(
        apply=jax.random.bernoulli(k_apply, params.occlusion_prob),
        centre=jax.random.uniform(k_centre, (2,), minval=0.0, maxval=size - 1.0),
        half_size=0.5 * size * jax.random.uniform(k_size, (2,), minval=lo, maxval=hi),
        angle=jax.random.uniform(k_angle, (), minval=0.0, maxval=jnp.pi),
        ellipse=jax.random.bernoulli(k_shape, params.occlusion_ellipse_prob),
        texture=jax.random.uniform(k_tex, (cells, cells, 3)),
    )


def sample_draw(key: jax.Array, size: int, params: AugmentParams) -> ExampleDraw:
    """All random quantities of one example in an S x S crop; disabled parts are identities.

    The key is split the same way whatever is enabled, so switching one part on or off leaves
    the other parts' draws unchanged.
    """
    k_geo, k_color, k_occ = jax.random.split(key, 3)
    on = params.enabled
    similarity = (
        sample_similarity(k_geo, size, params) if on and params.geometric else jnp.eye(3, dtype=jnp.float32)
    )
    color = sample_color_scale(k_color, params) if on and params.color else jnp.ones((3,), jnp.float32)
    occlusion = sample_occlusion(k_occ, size, params)
    if not (on and params.occlusion):
        occlusion = occlusion._replace(apply=jnp.zeros((), bool))
    return ExampleDraw(similarity, color, occlusion)


def train_example_key(seed, step, index) -> jax.Array:
    """The augmentation key of example `index` of the global batch at train step `step`:
    fold_in(fold_in(PRNGKey(seed), step), index), whatever the device count. The train step and
    `show-batch` both use it."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), step), index)


def example_keys(key: jax.Array, batch: int) -> jax.Array:
    """(batch,) keys: fold_in(key, i) for example i of the (per-device) batch."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))


def sample_batch_draws(key: jax.Array, batch: int, size: int, params: AugmentParams) -> ExampleDraw:
    """`ExampleDraw` with a leading (batch,) axis; example i is drawn from fold_in(key, i)."""
    return jax.vmap(lambda k: sample_draw(k, size, params))(example_keys(key, batch))


# ---------------------------------------------------------------------------------------- applying


def warp_image(image: jax.Array, similarity: jax.Array) -> jax.Array:
    """Warps an image by a 2D affine map, bilinear, zeros outside.

    Args:
        image: (H, W, C) float.
        similarity: (3, 3) source pixel -> output pixel (last row 0, 0, 1).

    Returns:
        (H, W, C), image's dtype: output pixel p samples the input at M^-1 p; each of the four
        bilinear neighbours that lies outside the input counts as 0.
    """
    chex.assert_rank(image, 3)
    chex.assert_shape(similarity, (3, 3))
    inverse = _invert_affine(similarity.astype(jnp.float32))
    xs, ys = _pixel_grid(image.shape[:2])
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return _bilinear(image, src_x, src_y).astype(image.dtype)


def transform_position_map(pos: jax.Array, similarity: jax.Array) -> jax.Array:
    """Moves a position map's VALUES by a similarity (the map itself is not warped).

    Args:
        pos: (H, W, 3) float, crop pixels (x right, y down, z toward the camera).
        similarity: (3, 3), as from `sample_similarity`.

    Returns:
        (H, W, 3), pos's dtype: x, y through the similarity, z times its scale (the square root
        of the absolute determinant of its 2x2 part).
    """
    chex.assert_shape(pos, (None, None, 3))
    chex.assert_shape(similarity, (3, 3))
    m = similarity.astype(jnp.float32)
    x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
    scale = jnp.sqrt(jnp.abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
    out = jnp.stack(
        [m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2], z * scale], axis=-1
    )
    return out.astype(pos.dtype)


def scale_colors(image: jax.Array, scale: jax.Array) -> jax.Array:
    """(H, W, 3) image times (3,) per-channel factors, clipped to [0, 1]; image's dtype."""
    chex.assert_shape(image, (None, None, 3))
    chex.assert_shape(scale, (3,))
    return jnp.clip(image * scale.astype(image.dtype), 0.0, 1.0)


def paste_occlusion(image: jax.Array, occlusion: Occlusion) -> jax.Array:
    """Replaces the pixels the patch covers by its noise texture (nothing if not `apply`).

    Args:
        image: (H, W, 3) float in [0, 1].
        occlusion: `Occlusion` in the image's pixel frame.

    Returns:
        (H, W, 3), image's dtype.
    """
    chex.assert_shape(image, (None, None, 3))
    chex.assert_shape(occlusion.texture, (None, None, 3))
    xs, ys = _pixel_grid(image.shape[:2])
    mask, tex_x, tex_y = _occlusion_geometry(jnp, xs, ys, occlusion)
    texture = _bilinear(occlusion.texture, tex_x, tex_y).astype(image.dtype)
    return jnp.where((mask & occlusion.apply)[..., None], texture, image)


def color_scale(key: jax.Array, image: jax.Array, params: AugmentParams) -> jax.Array:
    """Random per-channel colour scale of one (H, W, 3) image in [0, 1], clipped to [0, 1]."""
    return scale_colors(image, sample_color_scale(key, params))


def occlude(key: jax.Array, image: jax.Array, params: AugmentParams) -> jax.Array:
    """With probability `occlusion_prob`, pastes a random noise patch onto an (S, S, 3) image."""
    return paste_occlusion(image, sample_occlusion(key, image.shape[0], params))


def apply_draw(
    draw: ExampleDraw, image: jax.Array, pos: jax.Array, params: AugmentParams
) -> tuple[jax.Array, jax.Array]:
    """Applies one example's draw: warp, then colour scale, then occlusion.

    Args:
        draw: `ExampleDraw` without batch axis.
        image: (S, S, 3) float in [0, 1], the input crop.
        pos: (H, W, 3) float, its position map in crop pixels.
        params: which parts are enabled (static). Disabled parts are skipped, so with everything
            off the inputs come back bit for bit.

    Returns:
        (image, pos), same shapes and dtypes.
    """
    chex.assert_shape(image, (None, None, 3))
    chex.assert_shape(pos, (None, None, 3))
    if not params.enabled:
        return image, pos
    if params.geometric:
        image = warp_image(image, draw.similarity)
        pos = transform_position_map(pos, draw.similarity)
    if params.color:
        image = scale_colors(image, draw.color_scale)
    if params.occlusion:
        image = paste_occlusion(image, draw.occlusion)
    return image, pos


def augment_example(
    key: jax.Array, image: jax.Array, pos: jax.Array, params: AugmentParams
) -> tuple[jax.Array, jax.Array]:
    """Augments one (S, S, 3) image in [0, 1] and its (H, W, 3) position map (crop pixels)."""
    chex.assert_shape(image, (None, None, 3))
    return apply_draw(sample_draw(key, image.shape[0], params), image, pos, params)


def augment_batch(
    key: jax.Array, images: jax.Array, pos: jax.Array, params: AugmentParams
) -> tuple[jax.Array, jax.Array]:
    """Augments a batch; example i uses the key fold_in(key, i).

    Inside the pmapped train step pass key = fold_in(fold_in(PRNGKey(seed), step), device index),
    so every (seed, step, device, example) gets its own draw.

    Args:
        key: PRNG key.
        images: (B, S, S, 3) float in [0, 1].
        pos: (B, H, W, 3) float, crop pixels.
        params: `AugmentParams` (static).

    Returns:
        (images, pos), same shapes and dtypes.
    """
    chex.assert_rank([images, pos], 4)
    chex.assert_equal_shape_prefix([images, pos], 1)
    if not params.any_enabled:
        return images, pos
    draws = sample_batch_draws(key, images.shape[0], images.shape[1], params)
    return jax.vmap(apply_draw, in_axes=(0, 0, 0, None))(draws, images, pos, params)


def augmented_copies(
    key: jax.Array,
    image: jax.Array,
    pos: jax.Array,
    landmarks: jax.Array,
    draws: jax.Array,
    params: AugmentParams,
):
    """K augmented copies of one stored example, for offline augmented datasets.

    Copy i uses the draw of fold_in(key, draws[i]), applied exactly as in training
    (`apply_draw`), except that the map's all-zero pixels (outside the UV mask) stay zero; the
    landmarks move like the position map's values.

    Args:
        key: PRNG key of this example.
        image: (S, S, 3) uint8 crop. pos: (H, W, 3) float32 position map, crop pixels.
        landmarks: (68, 3) float32, crop pixels. draws: (K,) int32 draw indices. params: static.

    Returns:
        images (K, S, S, 3) uint8 (rounded), maps (K, H, W, 3), landmarks (K, 68, 3) and the
        similarities (K, 3, 3) (source crop -> augmented crop; the identity when geometry is off).
    """
    chex.assert_shape(image, (None, None, 3))
    chex.assert_shape(landmarks, (None, 3))
    image, pos, landmarks = jnp.asarray(image), jnp.asarray(pos), jnp.asarray(landmarks)
    outside = (pos == 0).all(-1, keepdims=True)  # zero pixels stay zero, as stored maps have them

    def one(index):
        draw = sample_draw(jax.random.fold_in(key, index), image.shape[0], params)
        out, out_pos = apply_draw(draw, image.astype(jnp.float32) / 255.0, pos, params)
        out_pos = jnp.where(outside, 0.0, out_pos)
        moved = transform_position_map(landmarks[:, None], draw.similarity)[:, 0]
        return jnp.round(out * 255.0).astype(jnp.uint8), out_pos, moved, draw.similarity

    return jax.vmap(one)(draws)


# ------------------------------------------------------------------------ host reference (numpy)


def augment_example_numpy(
    draw: ExampleDraw, image: np.ndarray, pos: np.ndarray, params: AugmentParams
) -> tuple[np.ndarray, np.ndarray]:
    """`apply_draw` on the host with numpy/scipy (map_coordinates, order 1), computed in float64.

    Args:
        draw: one example's `ExampleDraw` (numpy or JAX arrays, no batch axis).
        image: (S, S, 3) float in [0, 1].
        pos: (H, W, 3) float, crop pixels.
        params: which parts are enabled.

    Returns:
        (image, pos) as float32 numpy arrays (the inputs themselves when all is off).
    """
    image, pos = np.asarray(image), np.asarray(pos)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (S, S, 3), got shape {image.shape}")
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"pos must be (H, W, 3), got shape {pos.shape}")
    if not params.enabled:
        return image, pos
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float64)
    out = image.astype(np.float64)
    if params.geometric:
        m = np.asarray(draw.similarity, np.float64)
        inverse = np.linalg.inv(m)
        src = [
            inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2],  # rows (y)
            inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2],
        ]  # columns (x)
        out = np.stack(
            [
                ndimage.map_coordinates(out[..., c], src, order=1, mode="grid-constant")
                for c in range(out.shape[-1])
            ],
            axis=-1,
        )
        p = pos.astype(np.float64)
        scale = math.sqrt(abs(np.linalg.det(m[:2, :2])))
        pos = np.stack(
            [
                m[0, 0] * p[..., 0] + m[0, 1] * p[..., 1] + m[0, 2],
                m[1, 0] * p[..., 0] + m[1, 1] * p[..., 1] + m[1, 2],
                p[..., 2] * scale,
            ],
            axis=-1,
        )
    if params.color:
        out = np.clip(out * np.asarray(draw.color_scale, np.float64), 0.0, 1.0)
    if params.occlusion and bool(draw.occlusion.apply):
        occ = Occlusion(*(np.asarray(a, np.float64) for a in draw.occlusion))
        # Only the pixels within the patch's bounding circle can change.
        radius = math.hypot(*occ.half_size) + 1.0
        lo = np.clip(np.floor(occ.centre - radius), 0, out.shape[1::-1]).astype(int)
        hi = np.clip(np.ceil(occ.centre + radius) + 1, 0, out.shape[1::-1]).astype(int)
        box = np.s_[lo[1] : hi[1], lo[0] : hi[0]]
        mask, tex_x, tex_y = _occlusion_geometry(np, xs[box], ys[box], occ)
        texture = np.stack(
            [
                ndimage.map_coordinates(occ.texture[..., c], [tex_y, tex_x], order=1, mode="nearest")
                for c in range(3)
            ],
            axis=-1,
        )
        out[box] = np.where(mask[..., None], texture, out[box])
    return out.astype(np.float32), pos.astype(np.float32)


# ----------------------------------------------------------------------------------------- helpers


def _pixel_grid(shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """(x, y) float32 coordinates of every pixel centre of an (H, W) image, each (H, W)."""
    ys, xs = jnp.meshgrid(
        jnp.arange(shape[0], dtype=jnp.float32), jnp.arange(shape[1], dtype=jnp.float32), indexing="ij"
    )
    return xs, ys


def _affine_matrix(linear: jax.Array, offset: jax.Array) -> jax.Array:
    """(3, 3) float32 homogeneous matrix from a (2, 2) linear part and a (2,) offset."""
    top = jnp.concatenate([linear, offset[:, None]], axis=1)
    return jnp.concatenate([top, jnp.array([[0.0, 0.0, 1.0]])], axis=0).astype(jnp.float32)


def _invert_affine(m: jax.Array) -> jax.Array:
    """Inverse of a (3, 3) affine matrix, in closed form (exact for the identity)."""
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    linear_inv = jnp.stack([jnp.stack([d, -b]), jnp.stack([-c, a])]) / (a * d - b * c)
    return _affine_matrix(linear_inv, -_apply_linear(linear_inv, m[:2, 2]))


def _apply_linear(linear: jax.Array, vector: jax.Array) -> jax.Array:
    """(2, 2) @ (2,) written element-wise: full float32 on every platform (a dot would run at
    TF32 on NVIDIA GPUs and bfloat16 on TPUs by default; coordinates reach ~S px)."""
    return linear[:, 0] * vector[0] + linear[:, 1] * vector[1]


def _bilinear(image: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Samples an (H, W, C) array at float pixel positions x, y (equal shapes), float32.

    Neighbours outside the array contribute 0, as scipy's mode 'grid-constant' does. Returns
    x.shape + (C,).
    """
    h, w = image.shape[:2]
    x0f, y0f = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0f, y - y0f
    x0, y0 = x0f.astype(jnp.int32), y0f.astype(jnp.int32)
    image = image.astype(jnp.float32)

    def tap(yi, xi, weight):
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        value = image[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
        return jnp.where(inside[..., None], value * weight[..., None], 0.0)

    return (
        tap(y0, x0, (1 - fx) * (1 - fy))
        + tap(y0, x0 + 1, fx * (1 - fy))
        + tap(y0 + 1, x0, (1 - fx) * fy)
        + tap(y0 + 1, x0 + 1, fx * fy)
    )


def _occlusion_geometry(xp, xs, ys, occ: Occlusion):
    """Patch mask and texture-grid coordinates at pixel positions xs, ys.

    Shared by the JAX (xp = jnp) and numpy (xp = np) paths so both use one shape definition.
    Returns (mask bool, tex_x, tex_y), each of xs's shape; texture coordinates are grid cells
    clipped to [0, G - 1].
    """
    cells = occ.texture.shape[0]
    dx, dy = xs - occ.centre[0], ys - occ.centre[1]
    cos, sin = xp.cos(occ.angle), xp.sin(occ.angle)
    u = cos * dx + sin * dy  # along the patch's first axis
    v = -sin * dx + cos * dy  # along its second axis
    a, b = occ.half_size[0], occ.half_size[1]
    rectangle = (xp.abs(u) <= a) & (xp.abs(v) <= b)
    ellipse = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    mask = xp.where(occ.ellipse, ellipse, rectangle)
    tex_x = xp.clip((u + a) / (2 * a) * (cells - 1), 0, cells - 1)
    tex_y = xp.clip((v + b) / (2 * b) * (cells - 1), 0, cells - 1)
    return mask, tex_x, tex_y
