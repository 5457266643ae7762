"""Model folders -> UV assets and the frontal mean-face map, at a given map size.

A model folder holds either face3d's BFM.mat + BFM_UV.mat or PRNet's uv-data files
(docs/data_formats.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prn_jax.geometry import face_model as fm
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.geometry import uv_raster


def load_assets(model_dir, size: int):
    """UV assets at `size` and the baseline's frontal map from a model folder.

    `model_dir` holds either BFM.mat + BFM_UV.mat (face3d layout) or PRNet's uv-data files
    (uv_face_mask.png, ..., canonical_vertices.npy; 256 x 256 only).

    Returns:
      (assets, frontal map (S, S, 3), FaceModel and UVRaster or (None, None)).
    """
    model_dir = Path(model_dir)
    if (model_dir / "BFM.mat").is_file():
        model = fm.load_face_model(model_dir / "BFM.mat", model_dir / "BFM_UV.mat")
        raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, size)
        assets = uv_assets_lib.uv_assets_from_model(model, raster)
        return assets, frontal_map_from_model(model, raster), model, raster
    if (model_dir / "uv_face_mask.png").is_file():
        assets = uv_assets_lib.load_prnet_uv_data(model_dir)
        if assets.size != size:
            raise ValueError(
                f"{model_dir}: PRNet uv-data is {assets.size}x{assets.size} but the model's "
                f"maps are {size}x{size}; pass a BFM.mat + BFM_UV.mat folder instead"
            )
        return assets, frontal_map_from_prnet_uv_data(model_dir, assets), None, None
    raise FileNotFoundError(
        f"{model_dir}: neither BFM.mat + BFM_UV.mat nor PRNet uv-data (uv_face_mask.png) found"
    )


def frontal_map_from_model(model: fm.FaceModel, raster: uv_raster.UVRaster) -> np.ndarray:
    """(S, S, 3) the model's mean shape (model frame, y up) rendered into UV space."""
    return uv_raster.render_position_maps(model.mean.astype(np.float64), raster)


def frontal_map_from_prnet_uv_data(folder, assets: uv_assets_lib.UVAssets) -> np.ndarray:
    """(S, S, 3) PRNet's `canonical_vertices.npy` (frontal mean face at the face-mask pixels)."""
    path = Path(folder) / "canonical_vertices.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (PRNet uv-data folder; needed for the baseline)")
    vertices = np.load(path)
    if vertices.shape != (len(assets.face_indices), 3):
        raise ValueError(f"{path}: shape {vertices.shape}, expected ({len(assets.face_indices)}, 3)")
    out = np.zeros((assets.size * assets.size, 3))
    out[assets.face_indices] = vertices
    return out.reshape(assets.size, assets.size, 3)
