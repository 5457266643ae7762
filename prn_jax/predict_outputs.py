"""What `prn-jax predict` writes for each face, each output behind a name in `OUTPUTS`, every file
written atomically (a temporary file in the same folder, then renamed).

Per input NAME, folder OUT/NAME/: `overlay.png` (all faces) and per face K (largest first)
`faceK_<output files>`. Frames: image pixels, x right, y down, z toward the camera (module
`prn_jax.predict`), unless stated. Drawing and frontalisation are pure functions of arrays.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from prn_jax import texture
from prn_jax.evaluation import metrics
from prn_jax.geometry import mesh_io
from prn_jax.geometry import uv_assets as uv_assets_lib

# name -> files it writes (per face) and what they hold.
OUTPUTS = {
    "kpt": ("kpt.txt", "(68, 3) landmarks"),
    "posmap": ("posmap.npy", "(S, S, 3) float32 position map"),
    "vertices": ("vertices.npy", "(P, 3) float32 dense vertices (face-mask pixels)"),
    "obj": ("mesh.obj", "coloured dense mesh, y up (y' = H - 1 - y) unless --obj-frame image"),
    "frontal": ("frontal.obj", "the mesh with the head pose removed (x right, y up, z forward; pixels)"),
    "depth": ("depth.npy + depth.png", "(H, W) float32 depth, NaN off the face; uint8 view"),
    "texture": ("texture.png + texture_mask.png", "(S, S) UV texture from the photo; visibility"),
    "pose": ("pose.json", "yaw, pitch, roll (degrees), rotation, scale, translation"),
    "overlay": ("overlay.png", "the photo with every face's contours, box and axes (one per input)"),
}
DEFAULT_OUTPUTS = ("kpt", "pose", "obj", "overlay")

# 68-point contours (iBUG order): (first, last, closed).
CONTOURS = (
    (0, 16, False),  # jaw
    (17, 21, False),  # right brow (image left)
    (22, 26, False),  # left brow
    (27, 30, False),  # nose bridge
    (31, 35, False),  # nostrils
    (36, 41, True),  # right eye
    (42, 47, True),  # left eye
    (48, 59, True),  # outer lips
    (60, 67, True),  # inner lips
)
NOSE_TIP = 30
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 90, 255))  # head x (subject's left), y (up), z
FACE_COLOURS = ((80, 255, 80), (255, 200, 40), (80, 200, 255), (255, 90, 200))


def parse_outputs(text: str) -> tuple[str, ...]:
    """`--outputs kpt,depth` (or `all`) -> names in `OUTPUTS` order; ValueError naming a bad one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(OUTPUTS)
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise ValueError(
            f"--outputs {text!r}: unknown {bad or 'empty'}; choose from {', '.join(OUTPUTS)} or all"
        )
    return tuple(n for n in OUTPUTS if n in names)


# ------------------------------------------------------------------------------ drawing


def contour_segments(landmarks: np.ndarray) -> list[np.ndarray]:
    """The 68 points as polylines (jaw, brows, nose, eyes, lips): list of (k, 2) (x, y), closed
    ones with their first point repeated at the end."""
    xy = np.asarray(landmarks, np.float64)[:, :2]
    out = []
    for first, last, closed in CONTOURS:
        line = xy[first : last + 1]
        out.append(np.concatenate([line, line[:1]]) if closed else line)
    return out


def draw_faces(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """(H, W, 3) uint8: the image with, per face, its box, its 68 landmarks joined as contours and
    the head's axes from the nose tip (red: subject's left, green: up, blue: forward).

    faces: dicts with "landmarks" (68, >=2), "rotation" (3, 3) (`HeadPose.rotation`) and optional
    "box" (4,) x0, y0, x1, y1.
    """
    canvas = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(canvas)
    for k, face in enumerate(faces):
        colour = FACE_COLOURS[k % len(FACE_COLOURS)]
        xy = np.asarray(face["landmarks"], np.float64)[:, :2]
        face_px = max(float(np.mean(xy.max(0) - xy.min(0))), 1.0)
        width = max(1, int(round(face_px / 100)))
        if face.get("box") is not None:
            draw.rectangle(tuple(float(v) for v in face["box"]), outline=colour, width=width)
        for line in contour_segments(xy):
            draw.line([tuple(p) for p in line], fill=colour, width=width)
        radius = max(1.0, face_px / 120)
        for x, y in xy:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255))
        origin = xy[NOSE_TIP]
        for axis, axis_colour in zip(np.asarray(face["rotation"]).T, AXIS_COLOURS):
            tip = origin + 0.5 * face_px * np.array([axis[0], -axis[1]])  # camera y up -> image y down
            draw.line((*origin, *tip), fill=axis_colour, width=width + 1)
    return np.asarray(canvas)


# ------------------------------------------------------------------------------ geometry


def frontalize(vertices: np.ndarray, mean_face_points: np.ndarray) -> np.ndarray:
    """Dense image-frame vertices (P, 3) with the head pose removed: (P, 3) float64 in a y-up
    frame (x to the image's right, z toward the camera) at the photo's scale (pixels), centred on
    the fitted mean face's origin.

    The similarity camera = s R model + t fitted to the mean face (`predict.fit_head_pose`) is
    undone except for its scale: frontal = (camera - t) R (row vectors), camera = image frame
    with y flipped up.
    """
    camera = np.asarray(vertices, np.float64) * np.array([1.0, -1.0, 1.0])
    fit = metrics.fit_similarity(np.asarray(mean_face_points, np.float64), camera, similarity=True)
    return (camera - fit.translation) @ fit.rotation


# ------------------------------------------------------------------------------ files


def write_atomic(path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Calls `write(binary file)` on a temporary file beside `path`, then renames it to `path`
    (readers never see a partial file; a failed write leaves no file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would have given
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(path, pixels: np.ndarray) -> Path:
    return write_atomic(
        path, lambda f: Image.fromarray(np.asarray(pixels)).save(f, format="PNG", compress_level=1)
    )


def save_npy(path, array: np.ndarray) -> Path:
    return write_atomic(path, lambda f: np.save(f, np.asarray(array)))


def save_text(path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def pose_document(pose) -> dict:
    """JSON-ready head pose (`predict.HeadPose`)."""
    doc = {
        "yaw_deg": pose.yaw,
        "pitch_deg": pose.pitch,
        "roll_deg": pose.roll,
        "rotation": np.asarray(pose.rotation).tolist(),
        "scale": pose.scale,
    }
    if getattr(pose, "translation", None) is not None:
        doc["translation"] = np.asarray(pose.translation).tolist()
    doc["convention"] = (
        "3DDFA: R = Rx(pitch) Ry(yaw) Rz(roll), camera = scale * R @ mean_face + translation, "
        "camera = image frame with y up; yaw > 0 face turned toward the image's left, "
        "pitch > 0 head tilted up, roll > 0 head rotated clockwise in the image"
    )
    return doc


def write_face(
    folder,
    prefix: str,
    image: np.ndarray,
    prediction,
    assets: uv_assets_lib.UVAssets,
    mean_face_points: np.ndarray,
    outputs,
    obj_y_up: bool = True,
) -> list[Path]:
    """Writes the per-face `outputs` of one `predict.Prediction` as folder/prefix<file>; returns
    the paths."""
    folder = Path(folder)
    pos = np.asarray(prediction.position_map, np.float32)
    height, width = image.shape[:2]
    vertices = mesh_io.vertices_from_position_map(pos, assets.face_indices)
    paths = []
    name = lambda file: folder / f"{prefix}{file}"
    if "kpt" in outputs:
        buffer = io.StringIO()
        np.savetxt(buffer, prediction.landmarks, fmt="%.3f")
        paths.append(save_text(name("kpt.txt"), buffer.getvalue()))
    if "posmap" in outputs:
        paths.append(save_npy(name("posmap.npy"), pos))
    if "vertices" in outputs:
        paths.append(save_npy(name("vertices.npy"), vertices.astype(np.float32)))
    colors = None
    if "obj" in outputs or "frontal" in outputs:
        colors = mesh_io.sample_image_colors(image, vertices) / 255.0
    if "obj" in outputs:
        v, tri = np.array(vertices, np.float64), np.asarray(assets.triangles)
        if obj_y_up:
            v[:, 1] = height - 1 - v[:, 1]
            tri = tri[:, ::-1]  # y flipped: keep the normals facing the viewer
        paths.append(save_text(name("mesh.obj"), mesh_io.obj_text(v, tri, colors, decimals=4)))
    if "frontal" in outputs:
        frontal = frontalize(vertices, mean_face_points)
        # y up with the image's x: the mirror of the image frame, so reverse the winding too.
        paths.append(
            save_text(
                name("frontal.obj"),
                mesh_io.obj_text(frontal, np.asarray(assets.triangles)[:, ::-1], colors, decimals=4),
            )
        )
    if "depth" in outputs:
        depth = texture.depth_image(pos, assets, height, width)
        paths.append(save_npy(name("depth.npy"), depth))
        paths.append(save_png(name("depth.png"), texture.depth_to_uint8(depth)))
    if "texture" in outputs:
        tex = texture.uv_texture(image, pos)
        visible = texture.visibility_mask(pos, assets, height, width)
        paths.append(save_png(name("texture.png"), np.rint(tex * 255).astype(np.uint8)))
        paths.append(save_png(name("texture_mask.png"), visible.astype(np.uint8) * 255))
    if "pose" in outputs:
        paths.append(
            save_text(name("pose.json"), json.dumps(pose_document(prediction.pose), indent=1) + "\n")
        )
    return paths
