"""Prediction on a video file: per frame, the faces' 68 landmarks and head pose as CSV, and an
overlay video (frames read and written with imageio + its ffmpeg plugin: pip install
'prn-jax[video]').

Frames are predicted in batches like photos; faces come from the predictor's box source (a
detector, or --box / --auto-box applied to every frame).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from prn_jax import predict, predict_outputs

VIDEO_HINT = "pip install 'prn-jax[video]' (imageio, imageio-ffmpeg)"


def landmark_fields() -> list[str]:
    """CSV header: frame, face, box, score, yaw/pitch/roll (degrees), x0, y0 ... x67, y67 (pixels)."""
    fields = [
        "frame",
        "face",
        "x0_box",
        "y0_box",
        "x1_box",
        "y1_box",
        "score",
        "yaw_deg",
        "pitch_deg",
        "roll_deg",
    ]
    return fields + [f"{axis}{i}" for i in range(68) for axis in ("x", "y")]


def landmark_row(frame: int, face: int, prediction: predict.Prediction) -> list:
    pose = prediction.pose
    row = [frame, face, *(f"{v:.1f}" for v in prediction.box)]
    row += ["" if np.isnan(prediction.score) else f"{prediction.score:.3f}"]
    row += [f"{pose.yaw:.2f}", f"{pose.pitch:.2f}", f"{pose.roll:.2f}"]
    return row + [f"{v:.2f}" for v in np.asarray(prediction.landmarks)[:, :2].ravel()]


def _imageio():
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the plugin that reads and writes video files)
    except ImportError as error:
        raise predict.InputError(f"reading videos needs imageio and imageio-ffmpeg: {VIDEO_HINT}") from error
    return iio


def video_fps(path) -> float:
    """Frames per second of a video file (25 when the file does not say)."""
    iio = _imageio()
    try:
        fps = iio.immeta(path, plugin="FFMPEG").get("fps")
    except Exception:
        fps = None
    return float(fps) if fps else 25.0


def predict_video(path, out_dir, state, overlay: bool = True) -> int:
    """`_predict_video` with JAX's warning about os.fork silenced: ffmpeg runs as a subprocess
    (fork immediately followed by exec), which that warning does not concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*os.fork", category=RuntimeWarning)
        return _predict_video(path, out_dir, state, overlay)


def _predict_video(path, out_dir, state, overlay: bool = True) -> int:
    """Writes out_dir/landmarks.csv (`landmark_fields`, one row per frame and face) and, when
    `overlay`, out_dir/overlay.mp4; returns the number of frames.

    state: the CLI's predictor (its `face_crops(image, index, path)`, `predict_fn`, `assets`,
    `mean_face`, `args.batch_size`). A frame without a face has no row. InputError naming the
    file when it cannot be decoded.
    """
    iio = _imageio()
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = video_fps(path)
    rows: list[list] = []
    writer = None
    tmp_video = None
    count = 0
    batch: list[tuple[int, np.ndarray, list]] = []

    def flush():
        nonlocal writer
        preds = predict.predict_faces(
            [(f, c) for _, f, c in batch],
            state.predict_fn,
            state.assets,
            state.mean_face,
            state.args.batch_size,
        )
        for (index, frame, _), faces in zip(batch, preds):
            rows.extend(landmark_row(index, k, p) for k, p in enumerate(faces))
            if overlay:
                drawn = [{"landmarks": p.landmarks, "rotation": p.pose.rotation, "box": p.box} for p in faces]
                writer.write_frame(np.ascontiguousarray(predict_outputs.draw_faces(frame, drawn)))
        batch.clear()

    try:
        for index, frame in enumerate(iio.imiter(path, plugin="FFMPEG")):
            frame = np.asarray(frame)[..., :3].astype(np.uint8)
            count += 1
            if overlay and writer is None:
                import imageio_ffmpeg

                fd, tmp_video = tempfile.mkstemp(prefix=".overlay.", suffix=".mp4", dir=out_dir)
                os.close(fd)
                height, width = frame.shape[:2]
                writer = _Writer(imageio_ffmpeg, tmp_video, (width + width % 2, height + height % 2), fps)
            try:
                crops = state.face_crops(frame, 0, f"{path} frame {index}")
            except predict.InputError:
                crops = []  # no face in this frame: no row, the frame is drawn as it is
            batch.append((index, frame, crops))
            if len(batch) >= state.args.batch_size:
                flush()
        flush()
    except predict.InputError:
        raise
    except Exception as error:
        if tmp_video:
            Path(tmp_video).unlink(missing_ok=True)
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise predict.InputError(f"{path}: cannot read video ({type(error).__name__}: {first})") from error
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise predict.InputError(f"{path}: video has no frames")
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(landmark_fields())
    out.writerows(rows)
    predict_outputs.save_text(out_dir / "landmarks.csv", buffer.getvalue())
    if tmp_video:
        os.replace(tmp_video, out_dir / "overlay.mp4")
    return count


class _Writer:
    """imageio-ffmpeg's H.264 frame writer; frames are padded to the even size it was opened with
    (yuv420p needs even sides)."""

    def __init__(self, imageio_ffmpeg, path, size, fps):
        self._size = size
        self._gen = imageio_ffmpeg.write_frames(
            str(path), size, fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error"
        )
        self._gen.send(None)

    def write_frame(self, frame: np.ndarray) -> None:
        width, height = self._size
        padded = np.zeros((height, width, 3), np.uint8)
        padded[: frame.shape[0], : frame.shape[1]] = frame[..., :3]
        self._gen.send(padded)

    def close(self) -> None:
        self._gen.close()
