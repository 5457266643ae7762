"""A PNG contact sheet of dataset samples: each image with its 68 landmarks and, beside it, the
ground-truth position map the training pipeline derives from its `.mat`.

A legend strip on top says what each pair shows. Green dots: landmarks read from the position
map at the keypoint UV pixels and mapped back to the image (the training target); red dots:
`pt2d` from the `.mat`. Where they coincide and the map shows a face, image and fit agree. Map
colours: (x, y, z) / S as RGB, black off the face (outside the UV face mask).
"""

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

from prn_jax.geometry import crop, ground_truth, uv_assets, uv_raster

TILE = 256
LEGEND_PX = 22  # the legend strip above the tiles
LEGEND = (
    "each pair: image, landmarks (green: read from the position map; red: pt2d of the .mat)  |  "
    "position map, (x, y, z) / S as RGB, black off the face"
)


def position_map_rgb(position_map, face_mask=None):
    """(S, S, 3) crop-pixel position map -> (S, S, 3) uint8, (x, y, z) / S as colour; black
    outside `face_mask` ((S, S) bool) when given, and where the map is 0."""
    size = position_map.shape[0]
    rgb = np.clip(position_map / size, 0, 1)
    rgb[(position_map == 0).all(-1)] = 0
    if face_mask is not None:
        rgb[~face_mask] = 0
    return (rgb * 255).astype(np.uint8)


def sample_tile(model, raster, kpt_uv, image_path, mat_path, face_mask=None):
    """(TILE, 2 TILE, 3) uint8: annotated image | position map of one sample."""
    image = Image.open(image_path).convert("RGB")
    fit = scipy.io.loadmat(str(mat_path))
    for key in ("Shape_Para", "Exp_Para", "Pose_Para", "pt2d"):
        if key not in fit:
            raise ValueError(f"{mat_path}: missing key {key!r}")
    maps, transform = ground_truth.fit_to_position_maps(
        model,
        raster,
        fit["Shape_Para"].reshape(1, -1),
        fit["Exp_Para"].reshape(1, -1),
        fit["Pose_Para"].reshape(1, -1),
        image.height,
    )
    position_map = maps[0]
    landmarks = crop.uncrop(position_map[kpt_uv[:, 1], kpt_uv[:, 0]], transform[0])
    scale = TILE / image.width
    image = image.resize((TILE, TILE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    pt2d = fit["pt2d"].T
    for x, y in pt2d[(pt2d[:, 0] >= 0)] * scale:
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 0, 0))
    for x, y in landmarks[:, :2] * scale:
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(0, 255, 0))
    pos = Image.fromarray(position_map_rgb(position_map, face_mask)).resize((TILE, TILE))
    return np.concatenate([np.asarray(image), np.asarray(pos)], axis=1)


def contact_sheet(model, pairs, out_path, columns=3, map_size=256):
    """Writes a PNG grid of `sample_tile`s for [(image_path, mat_path)] and returns its path."""
    raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, map_size)
    assets = uv_assets.uv_assets_from_model(model, raster)
    face_mask = np.zeros(map_size * map_size, bool)
    face_mask[assets.face_indices] = True
    face_mask = face_mask.reshape(map_size, map_size)
    tiles = [sample_tile(model, raster, assets.kpt_uv, image, mat, face_mask) for image, mat in pairs]
    if not tiles:
        raise ValueError(f"{out_path}: no samples to show")
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((LEGEND_PX + rows * TILE, columns * 2 * TILE, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        top = LEGEND_PX + r * TILE
        sheet[top : top + TILE, c * 2 * TILE : (c + 1) * 2 * TILE] = tile
    image = Image.fromarray(sheet)
    ImageDraw.Draw(image).text((6, 5), LEGEND, fill=(255, 255, 255))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_path)
    return out_path


def dataset_pairs(root, limit=12):
    """Up to `limit` (jpg, mat) pairs from a synthetic or real 300W-LP / AFLW2000 folder tree,
    spread over the sorted list of samples."""
    mats = sorted(
        p
        for p in Path(root).rglob("*.mat")
        if p.with_suffix(".jpg").exists() and not p.name.endswith("_pts.mat")
    )
    if len(mats) > limit:
        mats = [mats[i] for i in np.linspace(0, len(mats) - 1, limit).astype(int)]
    return [(p.with_suffix(".jpg"), p) for p in mats]
