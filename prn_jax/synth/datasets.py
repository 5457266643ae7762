"""Synthetic 300W-LP and AFLW2000-3D sets in the real folder layouts and `.mat` formats.

  OUT/model/BFM.mat, OUT/model/BFM_UV.mat              the procedural model (face3d layout)
  OUT/300W_LP/{AFW,HELEN,IBUG,LFPW}/NAME.jpg + NAME.mat  450x450 JPEG + fit
  OUT/300W_LP/{DB}_Flip/NAME.jpg + NAME.mat            mirrored copies (optional)
  OUT/300W_LP/landmarks/{DB}/NAME_pts.mat              pts_2d, pts_3d (68, 2)
  OUT/AFLW2000/image0NNNN.jpg + .mat                    test set with pt3d_68

300W-LP samples come in subjects of `VIEWS_PER_SUBJECT` consecutive indices (one face, one
background, yaw profiled from near-frontal to 75-90 degrees, as 3DDFA's face profiling made
300W-LP); NAME = {DB}_synth_{subject:05d}_1_{view}. Keys, shapes, dtypes and key order of every
`.mat` are those of the real files; Pose_Para etc. fully determine the rendered face, so the
ground truth computed from a `.mat` by the real loaders matches its image.

Determinism and resumption: sample i of a set is a pure function of (seed, set, i) (its own
numpy Generator), JPEGs are written with fixed settings and `.mat` headers carry no timestamp,
so equal seeds give byte-identical trees whatever the number of workers. Each file is written
to a hidden `.NAME.partial` and renamed; a sample's main `.mat` is written last and marks it
complete, so a rerun skips complete samples and rewrites (identically) any partial one.
"""

import functools
import io
import json
import multiprocessing
import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from prn_jax.data import eval_data
from prn_jax.geometry import face_model as fm
from prn_jax.synth import render, sampling, scene

VIEWS_PER_SUBJECT = 8
JPEG_QUALITY = 95
MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, Platform: prn-jax synth, Created by: prn_jax.synth"
STREAM_SUBJECT, STREAM_VIEW, STREAM_TEST = 0, 1, 2


def mat_bytes(variables: dict) -> bytes:
    """MATLAB v5 file contents of `variables` (keys in order) with a fixed 116-byte header text
    (scipy writes the creation time there, which would break byte-identical reruns)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=False)
    return _fixed_header(buffer.getvalue())


def _fixed_header(data: bytes) -> bytes:
    return MAT_DESCRIPTION.ljust(116, b" ") + data[116:]


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Writes via a hidden sibling `.NAME.partial` and `os.replace`, so `path` is all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as stream:
        stream.write(data)
    os.replace(tmp, path)


def write_model(face, folder) -> tuple[Path, Path]:
    """Writes `BFM.mat` + `BFM_UV.mat` (geometry.save_face_model, fixed headers), atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "BFM.mat", folder / "BFM_UV.mat"
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp_paths = Path(tmp) / "BFM.mat", Path(tmp) / "BFM_UV.mat"
        fm.save_face_model(face.model, *tmp_paths)
        for src, dst in zip(tmp_paths, paths):
            write_atomic(dst, _fixed_header(src.read_bytes()))
    return paths


@functools.lru_cache(maxsize=2)
def _subject(face, seed, subject):
    """Per-subject draws of a 300W-LP subject: database, appearance, view angles, background,
    and its model-space vertices and albedo (shared by its views; cached per worker)."""
    rng = np.random.default_rng([seed, STREAM_SUBJECT, subject])
    database = sampling.DATABASES[
        rng.choice(4, p=sampling.DATABASE_WEIGHTS / sampling.DATABASE_WEIGHTS.sum())
    ]
    appearance = sampling.sample_appearance(rng, face.model)
    angles = sampling.profile_angles(rng, VIEWS_PER_SUBJECT)
    background = render.clutter_background(rng, sampling.IMAGE_SIZE, sampling.IMAGE_SIZE)
    neutral_fit = sampling.fit(appearance, np.zeros(7))
    return (
        database,
        appearance,
        angles,
        background,
        scene.model_vertices(face, neutral_fit),
        scene.albedo(face, appearance.tex),
    )


def w300lp_name(seed, index) -> tuple[str, str]:
    """(database, NAME) of 300W-LP sample `index`."""
    subject, view = divmod(index, VIEWS_PER_SUBJECT)
    rng = np.random.default_rng([seed, STREAM_SUBJECT, subject])
    database = sampling.DATABASES[
        rng.choice(4, p=sampling.DATABASE_WEIGHTS / sampling.DATABASE_WEIGHTS.sum())
    ]
    return database, f"{database}_synth_{subject:05d}_1_{view}"


def _w300lp_mat(face, fit, rendered, image_size):
    pt2d = scene.contour_landmarks(face, rendered.vertices, fit.pose)
    variables = {
        "pt2d": pt2d.T.astype(np.float64),
        "roi": scene.face_roi(pt2d, image_size)[None, :],
        "Illum_Para": fit.illum[None, :].astype(np.float64),
        "Color_Para": fit.color[None, :].astype(np.float32),
        "Tex_Para": fit.tex[:, None].astype(np.float64),
        "Shape_Para": fit.shape[:, None].astype(np.float64),
        "Exp_Para": fit.exp[:, None].astype(np.float64),
        "Pose_Para": fit.pose[None, :].astype(np.float32),
    }
    landmarks = {
        "pts_2d": pt2d.astype(np.float64),
        "pts_3d": rendered.vertices[face.model.kpt_ind, :2].astype(np.float64),
    }
    return variables, landmarks


def _mirror_rendered(face, rendered, image_size):
    vertices = rendered.vertices[face.mirror].copy()
    vertices[:, 0] = image_size - 1 - vertices[:, 0]
    return scene.Rendered(
        image=np.ascontiguousarray(rendered.image[:, ::-1]), vertices=vertices, fragments=None
    )


def w300lp_files(face, seed, index, flip) -> list[tuple[str, bytes]]:
    """[(relative path, bytes)] of 300W-LP sample `index`; the last one is its main `.mat`."""
    size = sampling.IMAGE_SIZE
    subject, view = divmod(index, VIEWS_PER_SUBJECT)
    database, appearance, angles, background, vertices, albedo = _subject(face, seed, subject)
    name = w300lp_name(seed, index)[1]
    rng = np.random.default_rng([seed, STREAM_VIEW, index])
    pose = sampling.place_pose(face.model, appearance, angles[view], sampling.image_centre(rng))
    fit = sampling.fit(appearance, pose)
    rendered = scene.render_fit(face, fit, background, rng, vertices=vertices, albedo_=albedo)
    variables, landmarks = _w300lp_mat(face, fit, rendered, size)
    files = [
        (f"300W_LP/{database}/{name}.jpg", jpeg_bytes(rendered.image)),
        (f"300W_LP/landmarks/{database}/{name}_pts.mat", mat_bytes(landmarks)),
    ]
    if flip:
        fit_m = sampling.mirrored(face, fit, size)
        variables_m, _ = _w300lp_mat(face, fit_m, _mirror_rendered(face, rendered, size), size)
        files += [
            (f"300W_LP/{database}_Flip/{name}.jpg", jpeg_bytes(rendered.image[:, ::-1].copy())),
            (f"300W_LP/{database}_Flip/{name}.mat", mat_bytes(variables_m)),
        ]
    files.append((f"300W_LP/{database}/{name}.mat", mat_bytes(variables)))
    return files


def aflw_bucket(seed, index) -> int:
    """|yaw| bucket of test sample `index`: 0, 1, 2 for the first three (all buckets populated),
    then drawn in AFLW2000-3D's proportions."""
    if index < 3:
        return index
    rng = np.random.default_rng([seed, STREAM_TEST, index, 1])
    return int(rng.choice(3, p=sampling.AFLW_BUCKET_WEIGHTS / sampling.AFLW_BUCKET_WEIGHTS.sum()))


def aflw_files(face, seed, index) -> list[tuple[str, bytes]]:
    """[(relative path, bytes)] of AFLW2000-3D sample `index`; the `.mat` last."""
    size = sampling.IMAGE_SIZE
    rng = np.random.default_rng([seed, STREAM_TEST, index])
    appearance = sampling.sample_appearance(rng, face.model)
    angles = sampling.aflw_angles(rng, aflw_bucket(seed, index))
    background = render.clutter_background(rng, size, size)
    pose = sampling.place_pose(face.model, appearance, angles, sampling.image_centre(rng))
    fit = sampling.fit(appearance, pose)
    rendered = scene.render_fit(face, fit, background, rng)
    pt2d = rendered.vertices[face.aflw21_ind, :2].astype(np.float64)
    seen = scene.visible(rendered.fragments, rendered.vertices, face.aflw21_ind)
    pt2d[~seen] = (scene.INVISIBLE_AFLW, size + 2)
    pt3d = rendered.vertices[face.model.kpt_ind]
    variables = {
        "pt2d": pt2d.T,
        "Illum_Para": fit.illum[None, :].astype(np.float64),
        "Color_Para": fit.color[None, :].astype(np.float32),
        "Tex_Para": fit.tex[:, None].astype(np.float64),
        "Shape_Para": fit.shape[:, None].astype(np.float64),
        "Exp_Para": fit.exp[:, None].astype(np.float64),
        "Pose_Para": fit.pose[None, :].astype(np.float32),
        "roi": scene.face_roi(pt3d[:, :2], size)[None, :],
        "pt3d_68": pt3d.T.astype(np.float32),
    }
    name = f"AFLW2000/image{index:05d}"
    return [(f"{name}.jpg", jpeg_bytes(rendered.image)), (f"{name}.mat", mat_bytes(variables))]


def _marker(face, seed, kind, index, flip) -> list[str]:
    if kind == "test":
        return [f"AFLW2000/image{index:05d}.mat"]
    database, name = w300lp_name(seed, index)
    markers = [f"300W_LP/{database}/{name}.mat"]
    if flip:
        markers.append(f"300W_LP/{database}_Flip/{name}.mat")
    return markers


_STATE = {}


def _init_worker(face, out, seed, flip):
    _STATE.update(face=face, out=out, seed=seed, flip=flip)


def _run_task(task):
    kind, index = task
    face, out, seed = _STATE["face"], _STATE["out"], _STATE["seed"]
    files = (
        aflw_files(face, seed, index) if kind == "test" else w300lp_files(face, seed, index, _STATE["flip"])
    )
    for relative, data in files:
        write_atomic(out / relative, data)
    return len(files)


def generate(face, out, num, seed, test_num=0, flip=False, workers=2, progress=True) -> dict:
    """Writes the model and both sets under `out`, skipping complete samples.

    Returns:
      {'written': samples generated now, 'skipped': samples already complete}.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob(".*.partial"):
        stale.unlink()
    write_model(face, out / "model")
    # Marks everything below `out` as synthetic, so evaluation titles never call it real data.
    (out / eval_data.SYNTHETIC_MARKER).write_text(
        json.dumps({"generator": "prn_jax.synth", "seed": seed}) + "\n"
    )
    for database in sampling.DATABASES:
        (out / "300W_LP" / database).mkdir(parents=True, exist_ok=True)
        (out / "300W_LP" / "landmarks" / database).mkdir(parents=True, exist_ok=True)
        if flip:
            (out / "300W_LP" / f"{database}_Flip").mkdir(parents=True, exist_ok=True)
    (out / "AFLW2000").mkdir(parents=True, exist_ok=True)
    tasks = [("train", i) for i in range(num)] + [("test", i) for i in range(test_num)]
    pending = [t for t in tasks if not all((out / m).exists() for m in _marker(face, seed, *t, flip))]
    bar = tqdm(total=len(pending), desc="synth", unit="img", disable=not progress)
    if workers <= 1 or len(pending) <= 1:
        _init_worker(face, out, seed, flip)
        for task in pending:
            _run_task(task)
            bar.update()
    else:
        # Spawned, not forked: the parent may hold JAX / BLAS threads. Results do not depend on
        # the process (see `reproducible`), so any worker count gives the same bytes.
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(face, out, seed, flip)) as pool:
            for _ in pool.imap_unordered(_run_task, pending, chunksize=VIEWS_PER_SUBJECT // 2):
                bar.update()
    bar.close()
    return {"written": len(pending), "skipped": len(tasks) - len(pending)}
