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

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from prn_jax.data import formats, input_pipeline, splits
from prn_jax.geometry import crop, ground_truth, uv_raster
from prn_jax.geometry import face_model as fm


def read_aflw_sample(image_path, mat_path) -> dict:
    """One AFLW2000-3D sample (`NAME.jpg` + `NAME.mat`, read by `prn_jax.data.formats`, whose
    FormatError names the file and key) as an example dict (module docstring), with the fit.

    The image goes through `formats.load_rgb_image`, the loader `prn-jax predict` uses too (grey,
    16-bit, palette, RGBA and CMYK files converted to RGB; tiny images refused)."""
    annotation = formats.read_aflw2000_annotation(mat_path)
    pixels = formats.load_rgb_image(image_path)
    fit = annotation.fit
    return {
        "image": pixels,
        "pt3d_68": annotation.pt3d_68,
        "yaw_deg": fit.yaw_degrees,
        "file_id": Path(image_path).stem,
        "pose_para": fit.pose,
        "shape_para": fit.shape_para,
        "exp_para": fit.exp_para,
    }


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


def with_fit_maps(
    examples: Iterable[Mapping], model: fm.FaceModel, raster: uv_raster.UVRaster
) -> Iterator[dict]:
    """Adds "position_map" (image pixels, z of the fit up to a shift) from each example's
    shape_para / exp_para / pose_para (face3d chain, `ground_truth.fit_to_position_maps`)."""
    matrix = uv_raster.raster_matrix(raster, model.num_vertices)
    for example in examples:
        if "position_map" in example or "shape_para" not in example:
            yield dict(example)
            continue
        for key, basis in (("shape_para", model.shape_basis), ("exp_para", model.exp_basis)):
            if np.size(example[key]) != basis.shape[-1]:
                raise ValueError(
                    f"{example.get('file_id', 'example')}: {key} has {np.size(example[key])} coefficients "
                    f"but the face model has {basis.shape[-1]}: pass the model the fits were made with "
                    f"(--model)"
                )
        maps, transform = ground_truth.fit_to_position_maps(
            model,
            raster,
            np.reshape(example["shape_para"], (1, -1)),
            np.reshape(example["exp_para"], (1, -1)),
            np.reshape(example["pose_para"], (1, 7)),
            image_height=np.shape(example["image"])[0],
            matrix=matrix,
        )
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
    return list(examples_from_folder(resolve(data), limit))


def resolve(data: Path) -> Path:
    """The folder evaluation reads: a synth root's AFLW2000/, else `data` itself."""
    data = Path(data)
    if (data / "AFLW2000").is_dir() and not any(data.glob("*.mat")):
        return data / "AFLW2000"
    return data


SYNTHETIC_MARKER = "prn_jax_synthetic.json"  # written by `prn-jax synth` at its root, copied by `build`


def is_synthetic(data: Path) -> bool:
    """True when `data` (an AFLW2000 folder, a synth root or a tfds dataset directory) or a folder
    above it carries the synthetic-data marker."""
    data = Path(data).resolve()
    return any((folder / SYNTHETIC_MARKER).is_file() for folder in [data, *list(data.parents)[:4]])


def describe(data: Path) -> dict:
    """{"name", "kind" ("synthetic" or "real"), "fingerprint"} of an evaluation data path.

    The fingerprint (12 hex digits of a SHA-256) covers every file's relative path and size and
    the bytes of the annotations (`.mat` files) or of a tfds dataset's `dataset_info.json` and
    records, so two different datasets never share it and a rebuilt identical one keeps it.
    """
    data = Path(data)
    digest = hashlib.sha256()
    tfds_dir = (data / "dataset_info.json").is_file()
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        rel = path.relative_to(data).as_posix()
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        if path.suffix == ".mat" or (tfds_dir and path.name != "dataset_info.json"):
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    if tfds_dir:
        info = json.loads((data / "dataset_info.json").read_text())
        name = f"{info.get('name', data.parent.parent.name)}-{info.get('configName', data.parent.name)}"
    else:
        name = data.name
    return {
        "name": name,
        "kind": "synthetic" if is_synthetic(data) else "real",
        "fingerprint": digest.hexdigest()[:12],
    }


VALIDATION_SPLIT = splits.VALIDATION


def validation_examples(config, limit: int | None = None) -> list[dict]:
    """The first `limit` records of the training dataset's validation split (prn_300w_lp, held out
    by identity: `prn_jax.data.splits`) as example dicts in the frame of their crop: "image"
    (S, S, 3) uint8 crop, "pt3d_68" its landmarks, "position_map" its map (crop pixels, no
    "crop_transform": the crop is the image), "yaw_deg" from the fit's pose, "file_id".

    Raises FileNotFoundError naming the dataset when it has no validation split (built before
    prn_300w_lp 1.2.0, or from so few source photos that none was held out).
    """
    settings = dataclasses.replace(input_pipeline.DataSettings.from_config(config), split=VALIDATION_SPLIT)
    try:
        source = input_pipeline.open_source(settings.dir, settings)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{settings.dir}: {settings.builder}/{settings.builder_config} has no {VALIDATION_SPLIT} split "
            f"(built before prn_300w_lp 1.2.0, or from too few source photos for one to be held out: "
            f"rebuild, or use more photos)"
        ) from e
    out = []
    for i in range(len(source) if limit is None else min(limit, len(source))):
        record = source[i]
        file_id = record["file_id"]
        out.append(
            {
                "image": np.asarray(record["image"]),
                "pt3d_68": np.asarray(record["landmarks"], np.float64),
                "position_map": record["position_map"],
                "yaw_deg": float(np.degrees(record["pose"][1])),
                "file_id": file_id.decode() if isinstance(file_id, bytes) else str(file_id),
            }
        )
    return out
