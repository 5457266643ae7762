"""AFLW2000-3D-like evaluation examples: from a folder of NAME.jpg + NAME.mat pairs, a synth
root, or a prepared aflw2000_3d tfds dataset; ground-truth maps from the fits.

Example interface (decoded numpy, one dict per image; what these sources and tests all give):
  "image":   (H, W, 3) uint8, the original image.
  "pt3d_68": (68, 3) float, ground-truth landmarks, original image pixels, x right, y down,
             z toward the camera (AFLW2000-3D `pt3d_68` transposed).
  "yaw_deg": float, ground-truth yaw in degrees (degrees(Pose_Para[1])).
  "file_id": optional str, shown in metrics.json.
  "position_map": optional (S, S, 3) float ground-truth map at the evaluation map size S, in
             original image pixels - or in crop pixels when "crop_transform" (3, 3) (image ->
             crop similarity) is given too; bytes = `formats.encode_position_map` (tfds records).
             Needed for the dense and reconstruction metrics.
  "shape_para", "exp_para", "pose_para": optional fit (`Shape_Para`, `Exp_Para`, `Pose_Para`
             flattened); `with_fit_maps` turns them into "position_map" given the face model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from prn_jax.data import formats
from prn_jax.geometry import crop, face_model as fm, ground_truth, uv_raster


def read_aflw_sample(image_path, mat_path) -> dict:
    """One AFLW2000-3D sample (`NAME.jpg` + `NAME.mat`, read by `prn_jax.data.formats`, whose
    FormatError names the file and key) as an example dict (module docstring), with the fit."""
    annotation = formats.read_aflw2000_annotation(mat_path)
    _, pixels = formats.read_rgb_image(image_path)
    fit = annotation.fit
    return {"image": pixels, "pt3d_68": annotation.pt3d_68, "yaw_deg": fit.yaw_degrees,
            "file_id": Path(image_path).stem, "pose_para": fit.pose, "shape_para": fit.shape_para,
            "exp_para": fit.exp_para}


def examples_from_folder(folder, limit: int | None = None) -> Iterator[dict]:
    """Example dicts of an AFLW2000-3D folder (`NAME.jpg` + `NAME.mat` pairs), sorted by name.

    Raises the first `formats.FormatError` when an image or `.mat` has no partner.
    """
    folder = Path(folder)
    pairs, problems = formats.pair_images_with_mats(folder)
    if problems:
        raise problems[0]
    if not pairs:
        raise FileNotFoundError(f"{folder}: no NAME.jpg + NAME.mat pairs (AFLW2000-3D layout)")
    for image_path, mat_path in pairs[:limit]:
        yield read_aflw_sample(image_path, mat_path)


def examples_from_tfds(directory) -> Sequence[dict]:
    """A prepared tfds dataset directory (with dataset_info.json) -> random-access examples."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(directory))
    split = "test" if "test" in builder.info.splits else next(iter(builder.info.splits))
    source = builder.as_data_source(split=split)

    class _Decoded(Sequence):
        def __len__(self):
            return len(source)

        def __getitem__(self, i):
            ex = dict(source[i])
            if isinstance(ex.get("file_id"), bytes):
                ex["file_id"] = ex["file_id"].decode()
            return ex

    return _Decoded()


def with_fit_maps(examples: Iterable[Mapping], model: fm.FaceModel, raster: uv_raster.UVRaster
                  ) -> Iterator[dict]:
    """Adds "position_map" (image pixels, z of the fit up to a shift) from each example's
    shape_para / exp_para / pose_para (face3d chain, `ground_truth.fit_to_position_maps`)."""
    matrix = uv_raster.raster_matrix(raster, model.num_vertices)
    for example in examples:
        if "position_map" in example or "shape_para" not in example:
            yield dict(example)
            continue
        maps, transform = ground_truth.fit_to_position_maps(
            model, raster, np.reshape(example["shape_para"], (1, -1)),
            np.reshape(example["exp_para"], (1, -1)), np.reshape(example["pose_para"], (1, 7)),
            image_height=np.shape(example["image"])[0], matrix=matrix)
        out = dict(example)
        out["position_map"] = np.asarray(crop.uncrop(maps[0], transform[0]), np.float32)
        yield out


def find_model_dir(data: Path) -> Path | None:
    for candidate in (data / "model", data.parent / "model"):
        if (candidate / "BFM.mat").is_file():
            return candidate
    return None


def load_examples(data: Path, limit: int | None) -> list[dict]:
    """AFLW2000-3D examples from a prepared tfds dir, an AFLW2000 folder or a synth root."""
    if (data / "dataset_info.json").is_file():
        source = examples_from_tfds(data)
        return [source[i] for i in range(len(source) if limit is None else min(limit, len(source)))]
    if (data / "AFLW2000").is_dir() and not any(data.glob("*.mat")):
        data = data / "AFLW2000"
    return list(examples_from_folder(data, limit))
