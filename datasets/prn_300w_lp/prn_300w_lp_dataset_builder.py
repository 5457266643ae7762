"""prn_300w_lp: 300W-LP fits -> PRNet training examples (crop, UV position map, landmarks).

Sources (nothing is downloaded):
  300W-LP: the manual dir (`manual_dir=` argument, else tfds' `<data_dir>/downloads/manual`),
    holding `300W_LP/` or being it: {AFW,HELEN,IBUG,LFPW}[_Flip]/NAME.jpg + NAME.mat; or holding
    the download `300W-LP.zip` (or being it), read in place (`prn_jax.data.source_tree`).
  Morphable model: `model_dir=` argument, else `<manual dir>/model`: face3d `BFM.mat` +
    `BFM_UV.mat` (`prn_jax.geometry.load_face_model`).

Record format (array_record, readable without TensorFlow through `tfds.data_source` or
`builder.as_data_source()`), S = the config's `map_size`:
  image: (S, S, 3) uint8 JPEG (quality 95) of face3d's 1.5-rule crop of the original image
    (box from the fit's 68 keypoint vertices, bilinear, black outside the image); in the
    `size{S}_raw` configs (`image_encoding='raw'`) the same crop's pixels stored raw (3 S^2 bytes,
    196,608 at 256; the synthetic default's set grows 1.6x), so reading needs no image decode.
  position_map: bytes; `prn_jax.data.formats.decode_position_map(bytes, S)` -> (S, S, 3) float32
    crop pixels (x right, y down, z toward the camera, min z over the mesh = 0), zero outside
    the UV face region; max error S/65536 px (uint16 levels of S/32768 px, row-delta byte
    planes, zlib).
  landmarks: (68, 3) float32, the fit's keypoint vertices in the same crop frame (equal to the
    map at `geometry.keypoint_uv_pixels` up to the UV interpolation between vertices).
  pose: (7,) float32 `Pose_Para`. shape: (ks,) float32 `Shape_Para`. expression: (ke,)
    float32 `Exp_Para`.
  crop_transform: (3, 3) float32 image pixels -> crop pixels (similarity, `geometry.crop`).
  image_height: int32, h of the original image (the fit's y flip), so the map can be rebuilt
    from the record alone (`geometry.position_maps_from_fits`, training's `maps_on_device`).
  file_id: text (bytes when read back), e.g. 'AFW_Flip/AFW_134212_1_0'; also the record key.

Splits, held out by identity (source photo; `prn_jax.data.splits`): 300W-LP's poses of one
photo and their mirrors are near-duplicates, so all of them go to the same split. An identity
('AFW_134212_1' for 'AFW[_Flip]/AFW_134212_1_<view>') is in `validation` iff
crc32(f"{split_seed}/{identity}") mod 10_000 < round(validation_fraction * 10_000) (defaults
0.05 and 0: about 5% of the photos), else in `train`; the rule depends on the names only, so
rebuilds and machines agree. Model selection uses `validation`, never AFLW2000-3D (the test
set). A split with no source files (a tiny set whose few identities all fall on one side) is
left out: tfds cannot write an empty split.

Offline augmentation (configs `size{S}_aug{K}`): every train fit gives its plain example plus K
augmented copies (file_id + '#aug{c}'), made by `prn_jax.augment.augmented_copies` with the
paper's ranges (`AugmentParams()`) from the key fold_in(fold_in(PRNGKey(augment_seed),
crc32(file_id)), c): the training step's own transforms, fixed once. The crop, map and landmarks
are augmented; crop_transform becomes (augmentation similarity) @ (crop), so
`position_maps_from_fits` still reproduces the stored map. A draw whose map leaves the storable
range [-S/2, 3S/2) is redrawn with index c + a K (a = 1, 2, ...; the copies lean slightly
away from the most extreme draws); after MAX_REDRAWS it is reported like a bad file.
`validation` holds plain examples only.

Bad input (`prn_jax.data.formats.FormatError`, naming file and key): an image without its `.mat`
or the reverse, a missing or undecodable image, a `.mat` without `Pose_Para` / `Shape_Para` /
`Exp_Para` or with a wrong shape, coefficient counts that differ from the model, a position
map outside the storable range. Default: the build fails on the first one. `skip_invalid=True`:
such files are left out and listed in `builder.build_report.skipped`.

Speed: the examples are made in batches (`batch_size` fits -> one vertex synthesis and one
precomputed-raster interpolation) by `workers` spawned processes (default: all cores).
"""

import collections
import dataclasses
import functools
import multiprocessing
import os
import zlib
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from prn_jax.data import formats, source_tree, splits
from prn_jax.data.builder_base import BuildReport, FolderBuilderMixin

MAP_SIZES = (256, 128, 64)
AUGMENTED_COPIES = (4, 10)
MAX_REDRAWS = 8
JPEG_QUALITY = 95


@dataclasses.dataclass
class Prn300wLpConfig(tfds.core.BuilderConfig):
    """map_size: side S of the crop and of the position map. include_flip: read *_Flip too.
    image_encoding: the crops as 'jpeg' (quality 95) or 'raw' uint8 pixels (no decode to read).
    augmented_copies: K seeded augmented copies written besides each plain train example (seed
    augment_seed). validation_fraction, split_seed: the identities held out in `validation`
    (module docstring)."""

    map_size: int = 256
    include_flip: bool = True
    image_encoding: str = "jpeg"
    augmented_copies: int = 0
    augment_seed: int = 0
    validation_fraction: float = 0.05
    split_seed: int = 0


def _configs():
    configs = []
    for size in MAP_SIZES:
        configs.append(
            Prn300wLpConfig(
                name=f"size{size}",
                map_size=size,
                include_flip=True,
                description=f"{size}x{size} crops and maps, all 8 folders (122,450 in train + validation)",
            )
        )
        configs.append(
            Prn300wLpConfig(
                name=f"size{size}_raw",
                map_size=size,
                include_flip=True,
                image_encoding="raw",
                description=f"size{size} with the crops as raw uint8 pixels (no JPEG: nothing to decode)",
            )
        )
        configs.append(
            Prn300wLpConfig(
                name=f"size{size}_noflip",
                map_size=size,
                include_flip=False,
                description=f"{size}x{size} crops and maps, without the *_Flip folders (61,225 in all)",
            )
        )
        for copies in AUGMENTED_COPIES:
            configs.append(
                Prn300wLpConfig(
                    name=f"size{size}_aug{copies}",
                    map_size=size,
                    include_flip=True,
                    augmented_copies=copies,
                    description=f"size{size} plus {copies} seeded augmented copies of every train example",
                )
            )
    return configs


ARCHIVES = ("300W-LP.zip", "300W_LP.zip")  # the download's name, and the folder's


def source_root(manual_dir):
    """The 300W_LP folder: inside (or equal to) the manual dir, or inside 300W-LP.zip there (or
    the manual dir being that zip), read in place: a Path or a `source_tree.ZipFolder`."""
    root = source_tree.find_root(
        manual_dir,
        "300W_LP",
        ARCHIVES,
        lambda root: any((root / db).is_dir() for db in formats.W300LP_DATABASES),
    )
    if root is None:
        raise formats.FormatError(
            manual_dir,
            "folder",
            f"300W_LP/ (with AFW, HELEN, IBUG, LFPW) not found in the manual dir, nor in {ARCHIVES[0]} there",
        )
    return root


def model_paths(model_dir) -> tuple[Path, Path]:
    """(BFM.mat, BFM_UV.mat) in `model_dir`; FormatError naming the missing one."""
    paths = Path(model_dir) / "BFM.mat", Path(model_dir) / "BFM_UV.mat"
    for path in paths:
        if not path.is_file():
            raise formats.FormatError(path, "model", "file missing (face3d morphable model)")
    return paths


def source_folders(include_flip, subsets=None) -> list[str]:
    """The 300W_LP folders read: `subsets` (default all of AFW, HELEN, IBUG, LFPW) and, with
    `include_flip`, their _Flip copies. ValueError naming an unknown database."""
    databases = list(subsets or formats.W300LP_DATABASES)
    unknown = [db for db in databases if db not in formats.W300LP_DATABASES]
    if unknown or not databases:
        raise ValueError(
            f"subsets {','.join(unknown) or '(none)'}: choose from {','.join(formats.W300LP_DATABASES)}"
        )
    databases = [db for db in formats.W300LP_DATABASES if db in databases]  # canonical order
    return databases + ([db + formats.FLIP_SUFFIX for db in databases] if include_flip else [])


def list_sources(root, include_flip, subsets=None) -> tuple[list, dict, list]:
    """All (image, .mat) pairs under the 300W_LP `root` (a Path or `source_tree.ZipFolder`), pairs
    per folder, and problems (unpaired files).

    A missing folder among `source_folders(include_flip, subsets)` raises FormatError (key
    'folder') naming the missing and the expected folders, whatever `skip_invalid` says: building
    from part of 300W-LP takes `subsets`."""
    folders, root = source_folders(include_flip, subsets), source_tree.as_source(root)
    missing = [name for name in folders if not (root / name).is_dir()]
    if missing:
        raise formats.FormatError(
            root,
            "folder",
            f"missing {', '.join(missing)}; expected {', '.join(folders)} (to build from the "
            f"databases present, name them: --subsets, e.g. --subsets AFW,HELEN)",
        )
    pairs, counts, problems = [], {}, []
    for name in folders:
        folder = root / name
        found, unpaired = formats.pair_images_with_mats(folder)
        pairs += found
        counts[name] = len(found)
        problems += unpaired
    return pairs, counts, problems


def file_id_of(root, image_path) -> str:
    """The record key of an image: '<folder>/<stem>' relative to the 300W_LP `root` (a folder or a
    folder in a zip: the same key)."""
    return source_tree.relative_id(root, image_path)


def split_pairs(pairs, root, fraction, seed) -> dict[str, list]:
    """{'train': [(image, mat)], 'validation': [...]}: `pairs` by their identity's split."""
    by_split = {splits.TRAIN: [], splits.VALIDATION: []}
    for image_path, mat_path in pairs:
        by_split[splits.split_of(file_id_of(root, image_path), fraction, seed)].append((image_path, mat_path))
    return by_split


class ExampleMaker:
    """Turns batches of (image, .mat) pairs into records; one per process (holds the model).

    Args: bfm_path, uv_path: the morphable model. map_size: S. root: the 300W_LP folder.
    augmented_copies, augment_seed: see the module docstring (0: plain examples only).
    image_encoding: 'jpeg' (bytes) or 'raw' (the uint8 array) crops.
    """

    def __init__(
        self, bfm_path, uv_path, map_size, root, augmented_copies=0, augment_seed=0, image_encoding="jpeg"
    ):
        from prn_jax import geometry  # imports JAX: keep it out of module import

        self.model = geometry.load_face_model(bfm_path, uv_path)
        self.raster = geometry.build_uv_raster(self.model.uv, self.model.full_triangles, map_size)
        self.size, self.root = map_size, source_tree.as_source(root)
        self.copies, self.augment_seed = augmented_copies, augment_seed
        self.image_encoding = image_encoding
        self._augment = None

    def _image(self, pixels):
        """The record's 'image' value of an (S, S, 3) uint8 crop."""
        if self.image_encoding == "raw":
            return np.ascontiguousarray(pixels, np.uint8)
        return formats.jpeg_bytes(pixels, JPEG_QUALITY)

    def __call__(self, pairs) -> tuple[list, list]:
        """[(image, mat)] -> ([(key, example)], [FormatError]) for the valid / invalid pairs."""
        from prn_jax.geometry import crop, ground_truth, uv_raster

        model = self.model
        valid, problems = [], []
        for image_path, mat_path in pairs:
            try:
                fit = formats.read_300w_lp_fit(mat_path)
                formats.check_fit_matches_model(fit, model.shape_std.size, model.exp_std.size, mat_path)
                _, pixels = formats.read_rgb_image(image_path)
            except formats.FormatError as error:
                problems.append(error)
                continue
            valid.append((image_path, mat_path, fit, pixels))
        by_height = collections.defaultdict(list)
        for item in valid:
            by_height[item[3].shape[0]].append(item)
        examples = []
        for height, items in by_height.items():
            vertices, transforms = ground_truth.fit_to_crop_vertices(
                model.mean,
                model.shape_basis,
                model.exp_basis,
                model.kpt_ind,
                np.stack([it[2].shape_para for it in items]),
                np.stack([it[2].exp_para for it in items]),
                np.stack([it[2].pose for it in items]),
                height,
                self.size,
                crop.TRAIN_SCALE,
            )
            maps = uv_raster.render_position_maps(vertices, self.raster)
            landmarks = vertices[:, model.kpt_ind]
            for (image_path, mat_path, fit, pixels), pos, kpt, transform in zip(
                items, maps, landmarks, transforms
            ):
                try:
                    encoded = formats.encode_position_map(pos)
                except ValueError as error:
                    problems.append(formats.FormatError(mat_path, "position_map", str(error)))
                    continue
                file_id = file_id_of(self.root, image_path)
                crop_pixels = formats.crop_image(pixels, transform, self.size)
                fields = {
                    "pose": fit.pose,
                    "shape": fit.shape_para,
                    "expression": fit.exp_para,
                    "image_height": np.int32(height),
                }
                examples.append(
                    (
                        file_id,
                        {
                            "image": self._image(crop_pixels),
                            "position_map": encoded,
                            "landmarks": kpt.astype(np.float32),
                            "crop_transform": np.asarray(transform, np.float32),
                            "file_id": file_id,
                            **fields,
                        },
                    )
                )
                if self.copies:
                    copies, copy_problems = self._augmented(
                        file_id, crop_pixels, pos, kpt, transform, fields, mat_path
                    )
                    examples += copies
                    problems += copy_problems
        return examples, problems

    def _augmented(self, file_id, crop_pixels, pos, landmarks, transform, fields, mat_path):
        """The K augmented copies of one example: ([(key, example)], [FormatError])."""
        import jax

        from prn_jax import augment

        if self._augment is None:
            self._augment = jax.jit(
                functools.partial(augment.augmented_copies, params=augment.AugmentParams())
            )
        key = jax.random.fold_in(
            jax.random.PRNGKey(self.augment_seed), zlib.crc32(file_id.encode()) & 0x7FFFFFFF
        )
        args = (key, crop_pixels, pos.astype(np.float32), landmarks.astype(np.float32))
        draws = np.arange(self.copies, dtype=np.int32)
        copies = jax.device_get(self._augment(*args, draws))
        examples, problems = [], []
        for copy in range(self.copies):
            image, pos_map, marks, similarity = (x[copy] for x in copies)
            for attempt in range(1, MAX_REDRAWS + 1):  # a map beyond the storable range: redraw
                try:
                    encoded = formats.encode_position_map(pos_map)
                    break
                except ValueError as error:
                    reason = str(error)
                redraw = np.array([copy + attempt * self.copies], np.int32)
                image, pos_map, marks, similarity = (
                    x[0] for x in jax.device_get(self._augment(*args, redraw))
                )
            else:
                problems.append(
                    formats.FormatError(
                        mat_path, f"position_map (augmented copy {copy})", f"{MAX_REDRAWS} draws: {reason}"
                    )
                )
                continue
            copy_id = f"{file_id}#aug{copy}"
            examples.append(
                (
                    copy_id,
                    {
                        "image": self._image(image),
                        "position_map": encoded,
                        "landmarks": marks,
                        "crop_transform": (
                            similarity.astype(np.float64) @ np.asarray(transform, np.float64)
                        ).astype(np.float32),
                        "file_id": copy_id,
                        **fields,
                    },
                )
            )
        return examples, problems


_MAKER = {}


def _init_worker(*args):
    _MAKER["maker"] = ExampleMaker(*args)


def _make_in_worker(pairs):
    return _MAKER["maker"](pairs)


def make_examples(pairs, maker_args, batch_size, workers):
    """Yields ([(key, example)], [FormatError]) per batch of `pairs`, in any order.

    workers <= 1: in this process; else a spawned pool (the parent may hold JAX threads).
    """
    batches = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
    if workers <= 1 or len(batches) <= 1:
        maker = ExampleMaker(*maker_args)
        yield from map(maker, batches)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(batches)), initializer=_init_worker, initargs=maker_args) as pool:
        yield from pool.imap_unordered(_make_in_worker, batches)


class Prn300wLp(FolderBuilderMixin, tfds.core.GeneratorBasedBuilder):
    """300W-LP as PRNet training examples; see the module docstring for the record format.

    Args (besides tfds' data_dir, config, file_format (default array_record)):
      manual_dir: folder holding 300W_LP/ (default: tfds' manual dir).
      model_dir: folder with BFM.mat + BFM_UV.mat (default: <manual dir>/model).
      skip_invalid: skip and report bad source files instead of failing.
      workers: processes generating examples (default: all cores). batch_size: fits per batch.
      subsets: the 300W-LP databases to read, e.g. ('AFW', 'HELEN') (default: all four; a
        missing one fails the build, naming the expected folders).
    After `download_and_prepare`, `build_report` says what was found and skipped (`examples`:
    both splits, augmented copies included). Splits: 'train', 'validation' (module docstring).
    """

    name = "prn_300w_lp"
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "Position maps from 300W-LP fits (face3d conventions).",
        "1.1.0": "image_height field; size{S}_aug{K} offline augmented configs.",
        "1.2.0": "validation split held out by source photo.",
    }
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put 300W_LP/ (Zhu et al. 2016: AFW, HELEN, IBUG, LFPW and their _Flip folders) in the manual
  dir, and BFM.mat + BFM_UV.mat (face3d's morphable model, e.g. generated with face3d's
  `generate_bfm` from the Basel Face Model 2009 and 3DDFA's files) in <manual dir>/model or a
  folder given as `model_dir`.
  """

    def __init__(self, *, workers=None, subsets=None, **kwargs):
        super().__init__(**kwargs)
        self.workers = workers or os.cpu_count() or 1
        self.subsets = tuple(subsets) if subsets else None  # databases read (None: all four)
        source_folders(True, self.subsets)  # an unknown database name fails before any work

    # tfds reads README.md / CITATIONS.bib from the folder of the builder's module, which it derives
    # from the module's name; installed as prn_jax.datasets, the module file is the answer.
    pkg_dir_path = epath.Path(__file__).parent

    # tfds locates the builder's source with `importlib_resources`, a backport package that the
    # TensorFlow-free environment does not install; the module file is the same answer.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    def _info(self):
        size = self.builder_config.map_size
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": (
                        tfds.features.Tensor(
                            shape=(size, size, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                        )
                        if self.builder_config.image_encoding == "raw"
                        else tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg")
                    ),
                    "position_map": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "landmarks": tfds.features.Tensor(shape=(68, 3), dtype=np.float32),
                    "pose": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                    "shape": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "expression": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "crop_transform": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
                    "image_height": tfds.features.Tensor(shape=(), dtype=np.int32),
                    "file_id": tfds.features.Text(),
                }
            ),
            homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
        )

    def _split_generators(self, dl_manager):
        manual_dir = Path(self._manual_dir or dl_manager.manual_dir)
        root = source_root(manual_dir)
        paths = model_paths(self._model_dir or manual_dir / "model")
        pairs, counts, problems = list_sources(root, self.builder_config.include_flip, self.subsets)
        self.build_report = BuildReport(images_per_folder=counts)
        self.build_report.record(problems, self.skip_invalid)
        config = self.builder_config
        by_split = split_pairs(pairs, root, config.validation_fraction, config.split_seed)
        copies = {splits.TRAIN: config.augmented_copies, splits.VALIDATION: 0}  # train only
        return {
            split: self._generate_examples(
                members,
                (*paths, config.map_size, root, copies[split], config.augment_seed, config.image_encoding),
            )
            for split, members in by_split.items()
            if members  # tfds cannot write an empty split
        }

    def _generate_examples(self, pairs, maker_args):
        for examples, problems in make_examples(pairs, maker_args, self.batch_size, self.workers):
            self.build_report.record(problems, self.skip_invalid)
            self.build_report.examples += len(examples)
            yield from examples
