"""aflw2000_3d: AFLW2000-3D for evaluation (original images, 68 3D landmarks, pose, GT maps).

Sources (nothing is downloaded): the manual dir (`manual_dir=` argument, else tfds'
`<data_dir>/downloads/manual`) holding `AFLW2000/` or being it: image0NNNN.jpg + .mat; or holding
the download `AFLW2000-3D.zip` (or being it), read in place (`prn_jax.data.source_tree`).
Configs `maps256` / `maps128` / `maps64` also need the morphable model: `model_dir=` argument,
else `<manual dir>/model` (face3d `BFM.mat` + `BFM_UV.mat`); `images` needs none.

Record format (array_record, readable without TensorFlow), S = 256 for `images`, else the
config's map size:
  image: (H, W, 3) uint8, the original JPEG bytes unchanged (450 x 450 in AFLW2000-3D).
  pt3d_68: (68, 3) float32 `pt3d_68` in original image pixels (x right, y down, z).
  pose: (7,) float32 `Pose_Para`. yaw_deg: float32 yaw in degrees (for the |yaw| buckets).
  crop_transform: (3, 3) float32 image pixels -> S x S crop pixels: PRNet's 1.6 rule on the
    box of pt3d_68 (`geometry.crop_from_keypoints(pt3d_68, S, crop.LANDMARK_SCALE)`).
  file_id: text (bytes when read back), e.g. 'image00050'; also the record key.
  position_map (maps configs only): bytes, `prn_jax.data.formats.decode_position_map(bytes, S)` ->
    (S, S, 3) float32: the fit's mesh through crop_transform (z times its scale, min z = 0),
    max error S/65536 px.

Bad input as in `prn_300w_lp` (FormatError naming file and key; `skip_invalid=True` skips
and lists in `builder.build_report.skipped`); the model checks apply to maps configs only.
2,000 samples: generated in this process, in batches.
"""

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from prn_jax.data import formats, source_tree
from prn_jax.data.builder_base import BuildReport, FolderBuilderMixin

EVAL_CROP_SIZE = 256


@dataclasses.dataclass
class Aflw20003dConfig(tfds.core.BuilderConfig):
    """map_size: S of the ground-truth maps, or None for no maps (and no model)."""

    map_size: int | None = None


ARCHIVES = ("AFLW2000-3D.zip", "AFLW2000.zip")  # the download's name, and the folder's


def source_folder(manual_dir):
    """The AFLW2000 folder: inside (or equal to) the manual dir, or inside AFLW2000-3D.zip there (or
    the manual dir being that zip), read in place: a Path or a `source_tree.ZipFolder`."""
    folder = source_tree.find_root(
        manual_dir,
        "AFLW2000",
        ARCHIVES,
        lambda folder: folder.is_dir() and (any(folder.glob("image*.mat")) or any(folder.glob("image*.jpg"))),
    )
    if folder is None:
        raise formats.FormatError(
            manual_dir,
            "folder",
            f"AFLW2000/ (image0NNNN.jpg + .mat) not found in the manual dir, nor in {ARCHIVES[0]} there",
        )
    return folder


class Aflw20003d(FolderBuilderMixin, tfds.core.GeneratorBasedBuilder):
    """AFLW2000-3D evaluation examples; see the module docstring for the record format.

    Args (besides tfds' data_dir, config, file_format (default array_record)):
      manual_dir: folder holding AFLW2000/. model_dir: BFM.mat + BFM_UV.mat (maps configs).
      skip_invalid: skip and report bad source files instead of failing.
      batch_size: fits per ground-truth batch.
    """

    name = "aflw2000_3d"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images, pt3d_68, pose; optional position maps."}
    BUILDER_CONFIGS = [Aflw20003dConfig(name="images", description="no position maps")] + [
        Aflw20003dConfig(
            name=f"maps{size}", map_size=size, description=f"with {size}x{size} ground-truth position maps"
        )
        for size in (256, 128, 64)
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put AFLW2000/ (AFLW2000-3D, Zhu et al. 2016: image0NNNN.jpg + .mat) in the manual dir; for
  the maps configs also BFM.mat + BFM_UV.mat in <manual dir>/model or `model_dir`.
  """

    # tfds reads README.md / CITATIONS.bib from the folder of the builder's module, which it derives
    # from the module's name; installed as prn_jax.datasets, the module file is the answer.
    pkg_dir_path = epath.Path(__file__).parent

    # tfds locates the builder's source with `importlib_resources`, a backport package that the
    # TensorFlow-free environment does not install; the module file is the same answer.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    @property
    def crop_size(self) -> int:
        return self.builder_config.map_size or EVAL_CROP_SIZE

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "pt3d_68": tfds.features.Tensor(shape=(68, 3), dtype=np.float32),
            "pose": tfds.features.Tensor(shape=(7,), dtype=np.float32),
            "yaw_deg": tfds.features.Scalar(dtype=np.float32),
            "crop_transform": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
            "file_id": tfds.features.Text(),
        }
        if self.builder_config.map_size:
            features["position_map"] = tfds.features.Tensor(shape=(), dtype=np.object_)
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
        )

    def _split_generators(self, dl_manager):
        manual_dir = Path(self._manual_dir or dl_manager.manual_dir)
        folder = source_folder(manual_dir)
        pairs, problems = formats.pair_images_with_mats(folder)
        self.build_report = BuildReport(images_per_folder={folder.name: len(pairs)})
        self.build_report.record(problems, self.skip_invalid)
        maker = None
        if self.builder_config.map_size:
            from prn_jax.datasets.prn_300w_lp import prn_300w_lp_dataset_builder as w300lp

            maker = MapMaker(
                *w300lp.model_paths(self._model_dir or manual_dir / "model"), self.builder_config.map_size
            )
        return {"test": self._generate_examples(pairs, maker)}

    def _generate_examples(self, pairs, maker):
        from prn_jax.geometry import crop

        for start in range(0, len(pairs), self.batch_size):
            batch, problems = [], []
            for image_path, mat_path in pairs[start : start + self.batch_size]:
                try:
                    annotation = formats.read_aflw2000_annotation(mat_path)
                    data, pixels = formats.read_rgb_image(image_path)
                    if maker is not None:
                        maker.check(annotation.fit, mat_path)
                except formats.FormatError as error:
                    problems.append(error)
                    continue
                transform = crop.crop_from_keypoints(annotation.pt3d_68, self.crop_size, crop.LANDMARK_SCALE)
                batch.append((image_path, mat_path, annotation, data, pixels.shape[0], transform))
            maps = [None] * len(batch)
            if maker is not None and batch:
                maps = maker([b[2].fit for b in batch], [b[4] for b in batch], [b[5] for b in batch])
            for (image_path, mat_path, annotation, data, _, transform), pos in zip(batch, maps):
                example = {
                    "image": data,
                    "pt3d_68": annotation.pt3d_68,
                    "pose": annotation.fit.pose,
                    "yaw_deg": np.float32(annotation.fit.yaw_degrees),
                    "crop_transform": np.asarray(transform, np.float32),
                    "file_id": image_path.stem,
                }
                if pos is not None:
                    try:
                        example["position_map"] = formats.encode_position_map(pos)
                    except ValueError as error:
                        problems.append(formats.FormatError(mat_path, "position_map", str(error)))
                        continue
                self.build_report.examples += 1
                yield image_path.stem, example
            self.build_report.record(problems, self.skip_invalid)


class MapMaker:
    """Ground-truth maps of AFLW2000-3D fits through given crop transforms (one model + raster)."""

    def __init__(self, bfm_path, uv_path, map_size):
        from prn_jax import geometry

        self.model = geometry.load_face_model(bfm_path, uv_path)
        self.raster = geometry.build_uv_raster(self.model.uv, self.model.full_triangles, map_size)

    def check(self, fit, path):
        formats.check_fit_matches_model(fit, self.model.shape_std.size, self.model.exp_std.size, path)

    def __call__(self, fits, heights, transforms) -> np.ndarray:
        """fits, image heights, (3, 3) crop transforms -> (B, S, S, 3) float32 crop-pixel maps."""
        from prn_jax.geometry import crop, pose, uv_raster

        vertices = pose.synthesize_vertices(
            self.model.mean,
            self.model.shape_basis,
            self.model.exp_basis,
            np.stack([f.shape_para for f in fits]),
            np.stack([f.exp_para for f in fits]),
        )
        poses = np.stack([f.pose for f in fits])
        image = np.stack(
            [pose.to_image(pose.transform_vertices(v, p), h) for v, p, h in zip(vertices, poses, heights)]
        )
        cropped = crop.crop_vertices(image, np.stack(transforms).astype(np.float32))
        return uv_raster.render_position_maps(cropped, self.raster)
