"""Geometry core: morphable model, pose, crops, UV rasterisation and position-map assets."""

from prn_jax.geometry.crop import (
    apply_similarity,
    box_from_keypoints,
    crop_center_size,
    crop_from_detector_box,
    crop_from_keypoints,
    crop_similarity,
    crop_vertices,
    similarity_scale,
    uncrop,
)
from prn_jax.geometry.face_model import FaceModel, load_face_model, save_face_model, validate_face_model
from prn_jax.geometry.ground_truth import (
    FitRenderArrays,
    fit_render_arrays,
    fit_to_crop_vertices,
    fit_to_position_maps,
    make_fit_to_position_maps_jax,
    position_maps_from_fits,
)
from prn_jax.geometry.mesh_io import (
    landmarks_from_position_map,
    mesh_from_position_map,
    sample_image_colors,
    sample_position_map,
    vertices_from_position_map,
    write_obj,
    write_position_map_obj,
)
from prn_jax.geometry.pose import (
    fit_to_image_vertices,
    rotation_matrix,
    synthesize_vertices,
    to_image,
    transform_vertices,
)
from prn_jax.geometry.uv_assets import (
    UVAssets,
    keypoint_uv_pixels,
    load_prnet_uv_data,
    mask_grid_triangles,
    region_labels_from_model,
    region_labels_from_prnet_masks,
    uv_assets_from_model,
)
from prn_jax.geometry.uv_embedding import boundary_loop, harmonic_uv_embedding
from prn_jax.geometry.uv_raster import (
    UVRaster,
    build_uv_raster,
    render_position_maps,
    render_position_maps_jax,
    uv_to_pixels,
)
