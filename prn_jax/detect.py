"""Face detection for `prn-jax predict` with detectors whose package ships its model (nothing is
downloaded at run time), and the rule that turns a detector box into a network crop.

Detectors (docs/predict.md has the measurements behind the choice):
  "dlib"   dlib's built-in HOG + linear SVM frontal detector (`dlib.get_frontal_face_detector`,
           5 HOG filters: frontal, left/right-looking, and tilted). Package `dlib-bin` (binary
           wheel, ~11 MB) or `dlib`; the default.
  "opencv" OpenCV's bundled Haar cascades (`cv2.data.haarcascades`: frontalface_alt2, plus the
           profile cascade on the image and its mirror). Package `opencv-python-headless<5`
           (OpenCV 5 no longer ships the cascades), ~160 MB.

Boxes are (x0, y0, x1, y1) float64 image pixels (x right, y down), largest first. A box becomes a
crop by `BoxConvention`: side = scale x (w + h) / 2 of the box, centre = box centre +
(shift_x, shift_y) x (w + h) / 2; PRNet's rule for dlib's CNN detector is scale 1.58,
shift_y 0.14 (`PRNET_CONVENTION`). Each detector here has its own measured convention
(`CONVENTIONS`) that reproduces, on average, the landmark crop (side 1.6 x the box of the 68
points, centred on it) that evaluation uses: dlib's HOG boxes are tighter than its CNN's.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from prn_jax.geometry import crop

DEFAULT_DETECTOR = "dlib"
INSTALL_HINT = {
    "dlib": "pip install 'prn-jax[detect]' (or pip install dlib-bin)",
    "opencv": "pip install 'opencv-python-headless<5'",
}


class DetectorUnavailable(RuntimeError):
    """The detector's package is not installed; the message says how to install it."""


class BoxConvention(NamedTuple):
    """Detector box -> square crop: side = scale * old_size, centre = box centre +
    (shift_x, shift_y) * old_size, old_size = (w + h) / 2 of the box."""

    scale: float
    shift_x: float
    shift_y: float


PRNET_CONVENTION = BoxConvention(crop.DETECTOR_SCALE, 0.0, crop.DETECTOR_SHIFT_Y)
# Fitted by benchmarks/compare_detectors.py --calibrate on the real AFLW2000-3D photos each detector
# found (13 of 16): medians of the side and vertical shift that reproduce the 1.6 landmark crop; the
# horizontal median is set to 0 (it follows the sample's yaw; a mirrored photo needs the mirrored
# crop). docs/predict.md has the table.
CONVENTIONS = {
    "dlib": BoxConvention(1.56, 0.0, 0.10),
    "opencv": BoxConvention(1.44, 0.0, 0.16),
}


@dataclasses.dataclass(frozen=True)
class Face:
    """One detection: box (4,) float64 (x0, y0, x1, y1) image pixels; score (detector units,
    larger = surer); detector name."""

    box: np.ndarray
    score: float
    detector: str

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))


Detector = Callable[[np.ndarray], list[Face]]


def _import(module: str, detector: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise DetectorUnavailable(
            f"face detector {detector!r} needs the {module} package: {INSTALL_HINT[detector]}"
        ) from error


def largest_first(faces: Sequence[Face], max_faces: int | None = None) -> list[Face]:
    """Faces sorted by box area, largest first (ties: higher score), at most `max_faces`."""
    ordered = sorted(faces, key=lambda f: (-f.area, -f.score))
    return ordered if max_faces is None else ordered[:max_faces]


def suppress_overlaps(faces: Sequence[Face], max_iou: float = 0.3) -> list[Face]:
    """Greedy non-maximum suppression by score: drops a face whose box overlaps a kept one by
    IoU > max_iou (the profile cascade and its mirror can fire on one face)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(box_iou(face.box, k.box) <= max_iou for k in kept):
            kept.append(face)
    return kept


def box_iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# ------------------------------------------------------------------------------ detectors


def dlib_detector(
    upsample: int = 0, threshold: float = 0.0, fallback_threshold: float | None = -0.5
) -> Detector:
    """dlib's HOG frontal face detector (model inside the package).

    upsample: image doublings before detection (each finds faces half as large: 0 finds faces
      down to ~80 px, 1 down to ~40 px, ~4x slower). threshold: SVM score cut (0 = dlib's).
    fallback_threshold: when nothing scores above `threshold`, the single best detection above
      this lower cut is returned (strongly turned heads score below 0; one face, not several,
      so a crowd photo gains no false faces). None: no fallback.
    """
    dlib = _import("dlib", "dlib")
    hog = dlib.get_frontal_face_detector()

    def detect(image: np.ndarray) -> list[Face]:
        pixels = np.ascontiguousarray(image, np.uint8)
        cut = threshold if fallback_threshold is None else min(threshold, fallback_threshold)
        rects, scores, _ = hog.run(pixels, upsample, cut)
        faces = [
            Face(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64), float(s), "dlib")
            for r, s in zip(rects, scores)
        ]
        sure = [f for f in faces if f.score >= threshold]
        return sure or sorted(faces, key=lambda f: -f.score)[:1]

    return detect


def opencv_detector(min_size_fraction: float = 0.1, profile: bool = True) -> Detector:
    """OpenCV's bundled Haar cascades: frontalface_alt2 and (profile=True) the profile cascade on
    the image and its mirror, merged by `suppress_overlaps`.

    min_size_fraction: smallest face side as a fraction of the image's shorter side.
    Scores: the cascade's level weight (frontal) or level weight - 1 (profile, less sure).
    """
    cv2 = _import("cv2", "opencv")
    root = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if root is None or not hasattr(cv2, "CascadeClassifier"):
        raise DetectorUnavailable(
            f"OpenCV {cv2.__version__} ships no Haar cascades (OpenCV 5 dropped them): "
            f"{INSTALL_HINT['opencv']}"
        )
    frontal = cv2.CascadeClassifier(root + "haarcascade_frontalface_alt2.xml")
    side = cv2.CascadeClassifier(root + "haarcascade_profileface.xml") if profile else None

    def run(cascade, gray, min_side):
        boxes, _, weights = cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=3, minSize=(min_side, min_side), outputRejectLevels=True
        )
        return [(np.asarray(b, np.float64), float(w)) for b, w in zip(boxes, np.ravel(weights))]

    def detect(image: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY))
        min_side = max(int(min_size_fraction * min(gray.shape)), 20)
        faces = [
            Face(np.array([x, y, x + w, y + h]), s, "opencv")
            for (x, y, w, h), s in run(frontal, gray, min_side)
        ]
        if side is not None:
            width = gray.shape[1]
            for (x, y, w, h), s in run(side, gray, min_side):
                faces.append(Face(np.array([x, y, x + w, y + h]), s - 1.0, "opencv"))
            for (x, y, w, h), s in run(side, np.ascontiguousarray(gray[:, ::-1]), min_side):
                faces.append(Face(np.array([width - x - w, y, width - x, y + h]), s - 1.0, "opencv"))
        return suppress_overlaps(faces)

    return detect


FACTORIES = {"dlib": dlib_detector, "opencv": opencv_detector}


@functools.cache
def make_detector(name: str = DEFAULT_DETECTOR) -> Detector:
    """The named detector (`FACTORIES`), built once per process. DetectorUnavailable with the
    install command when its package is missing; ValueError for an unknown name."""
    if name not in FACTORIES:
        raise ValueError(f"face detector {name!r}: expected one of {sorted(FACTORIES)}")
    return FACTORIES[name]()


def detect_faces(
    image: np.ndarray, detector: Detector, max_faces: int | None = None, min_side: float = 0.0
) -> list[Face]:
    """Faces in a (H, W, 3) uint8 RGB image, largest first, at most `max_faces`, boxes clipped
    to the image and smaller than `min_side` pixels (shorter side) dropped."""
    height, width = np.shape(image)[:2]
    faces = []
    for face in detector(image):
        box = np.clip(face.box, 0, [width - 1, height - 1, width - 1, height - 1])
        if min(box[2] - box[0], box[3] - box[1]) >= max(min_side, 1.0):
            faces.append(dataclasses.replace(face, box=box))
    return largest_first(faces, max_faces)


# ------------------------------------------------------------------------------ crops


def crop_transform(box, size: int, convention: BoxConvention = PRNET_CONVENTION) -> np.ndarray:
    """(3, 3) float64 image -> S x S crop similarity from a detector box (x0, y0, x1, y1)."""
    box = np.asarray(box, np.float64)
    center, side = crop.crop_center_size(box, convention.scale, convention.shift_y)
    old_size = (box[2] - box[0] + box[3] - box[1]) / 2
    center = center + np.array([convention.shift_x * old_size, 0.0])
    return np.asarray(crop.crop_similarity(center, side, size), np.float64)


def convention_from_pairs(
    detector_boxes: np.ndarray, landmark_boxes: np.ndarray, landmark_scale: float = crop.LANDMARK_SCALE
) -> BoxConvention:
    """The convention that maps detector boxes onto the landmark crop, by medians.

    Args:
      detector_boxes, landmark_boxes: (N, 4) (x0, y0, x1, y1), matched pairs; landmark boxes are
        the tight boxes of the 68 annotated points.
      landmark_scale: the landmark crop's side / the landmark box's old_size (1.6: evaluation).
    Returns:
      BoxConvention with scale = median(landmark_scale * old_lm / old_det) and shifts =
      median((centre_lm - centre_det) / old_det), rounded to 0.01.
    """
    det = np.asarray(detector_boxes, np.float64).reshape(-1, 4)
    lm = np.asarray(landmark_boxes, np.float64).reshape(-1, 4)
    old = lambda b: (b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2
    centre = lambda b: np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], -1)
    shift = (centre(lm) - centre(det)) / old(det)[:, None]
    return BoxConvention(
        round(float(np.median(landmark_scale * old(lm) / old(det))), 2),
        round(float(np.median(shift[:, 0])), 2),
        round(float(np.median(shift[:, 1])), 2),
    )
