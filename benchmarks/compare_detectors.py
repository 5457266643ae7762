"""Face detectors for `prn-jax predict`, measured on AFLW2000-3D-layout folders (NAME.jpg + NAME.mat):
recall, IoU of the detected box against the box of the annotated 68 points, time per image, and
the 68-point 2D NME through one model when the crop comes from the detector box (PRNet's rule and
the detector's own convention, `prn_jax.detect.CONVENTIONS`) against the crop from the ground-truth
landmarks (evaluation's 1.6 rule).

  python benchmarks/compare_detectors.py --workdir runs/default/run --checkpoint best \
      --model runs/default/data/synth/model --data runs/default/data/synth/AFLW2000 --calibrate
  python benchmarks/compare_detectors.py --workdir runs/default/run --checkpoint best \
      --model runs/default/data/synth/model --data /path/to/AFLW2000

A detector "finds" a face when its largest box has IoU >= 0.3 with the 68-point box (detector
boxes are tighter than the landmark box: IoU ~0.5 is a good hit). NME columns average the images
every compared path found, so the paths are compared on the same images. --calibrate prints the
convention (`detect.convention_from_pairs`) that maps each detector's boxes onto the 1.6 landmark
crop on this data.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

HIT_IOU = 0.3


def _package_size(distributions: tuple[str, ...]) -> str:
    """Installed size of the first of `distributions` that is installed (its RECORD's files)."""
    from importlib import metadata

    for name in distributions:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total = sum(f.size or 0 for f in dist.files or ())
        return f"{name} {total / 2**20:.0f} MiB"
    return "-"


DISTRIBUTIONS = {"dlib": ("dlib-bin", "dlib"), "opencv": ("opencv-python-headless", "opencv-python")}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, action="append", help="AFLW2000-3D-layout folder")
    parser.add_argument("--detectors", default="dlib,opencv")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()

    from prn_jax import detect, inference, predict, representation
    from prn_jax.data import eval_data
    from prn_jax.geometry import crop, model_assets

    network, variables, size, rep_name = predict.load_network(args.workdir, args.checkpoint)
    assets, frontal, _, _ = model_assets.load_assets(args.model, size)
    mean_face = predict.canonical_face_points(frontal, assets)
    predict_fn = inference.make_predict_fn(
        network,
        variables,
        batch_size=1,
        rep=representation.resolve(rep_name),
        context=representation.make_context(size, frontal, assets),
    )

    def nme(image, transform, gt):
        kpt = predict.predict_image(image, transform, predict_fn, assets, mean_face).landmarks
        box = crop.box_from_keypoints(gt, truncate=False)
        return float(
            np.linalg.norm(kpt[:, :2] - gt[:, :2], axis=1).mean()
            / np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
        )

    names = [n for n in args.detectors.split(",") if n]
    detectors = {}
    for name in names:
        try:
            detectors[name] = detect.make_detector(name)
        except detect.DetectorUnavailable as error:
            print(f"skipping {name}: {error}")
    for folder in args.data:
        examples = list(eval_data.examples_from_folder(folder, args.limit))
        print(f"\n## {folder}: {len(examples)} images, model {args.workdir} ({args.checkpoint}), S={size}\n")
        gt_nme = []
        per = {name: {"ms": [], "iou": [], "hit": [], "box": [], "lm": []} for name in detectors}
        for ex in examples:
            image, gt = ex["image"], np.asarray(ex["pt3d_68"], np.float64)
            lm_box = np.asarray(crop.box_from_keypoints(gt, truncate=False))
            gt_nme.append(nme(image, predict.transform_from_landmarks(gt, image.shape, size), gt))
            for name, detector in detectors.items():
                detector(image)  # warm (first call allocates)
                t0 = time.perf_counter()
                faces = detect.detect_faces(image, detector)
                per[name]["ms"].append(1e3 * (time.perf_counter() - t0))
                iou = detect.box_iou(faces[0].box, lm_box) if faces else 0.0
                per[name]["iou"].append(iou)
                per[name]["hit"].append(iou >= HIT_IOU)
                per[name]["box"].append(faces[0].box if faces else None)
                per[name]["lm"].append(lm_box)
        gt_nme = np.array(gt_nme)
        both = np.ones(len(examples), bool)
        for name in detectors:
            both &= np.array(per[name]["hit"])
        print(
            f"ground-truth landmark crop (1.6): NME 2D {100 * gt_nme.mean():.2f}% over all "
            f"{len(examples)}, {100 * gt_nme[both].mean():.2f}% over the {both.sum()} every detector found"
        )
        print(
            "\n| detector | package size | found | mean IoU (found) | ms / image (median) | convention "
            "| NME PRNet rule | NME own rule | NME GT crop, same images | own / GT |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name in detectors:
            hit = np.array(per[name]["hit"])
            iou = np.array(per[name]["iou"])
            rows = {"prnet": detect.PRNET_CONVENTION, "own": detect.CONVENTIONS[name]}
            errs = {k: [] for k in rows}
            for i in np.flatnonzero(both):
                ex = examples[i]
                for key, convention in rows.items():
                    transform = detect.crop_transform(per[name]["box"][i], size, convention)
                    errs[key].append(nme(ex["image"], transform, np.asarray(ex["pt3d_68"], np.float64)))
            own, prnet, ref = np.mean(errs["own"]), np.mean(errs["prnet"]), gt_nme[both].mean()
            print(
                f"| {name} | {_package_size(DISTRIBUTIONS[name])} | {hit.sum()}/{len(hit)} | "
                f"{iou[hit].mean():.3f} | "
                f"{statistics.median(per[name]['ms']):.1f} | {tuple(detect.CONVENTIONS[name])} | "
                f"{100 * prnet:.2f}% | {100 * own:.2f}% | {100 * ref:.2f}% | {own / ref:.3f} |"
            )
            if args.calibrate:
                found = np.flatnonzero(hit)
                boxes = np.stack([per[name]["box"][i] for i in found])
                lm_boxes = np.stack([per[name]["lm"][i] for i in found])
                fitted = detect.convention_from_pairs(boxes, lm_boxes)
                # Leave-one-out: each image's crop from the convention fitted on the others.
                loo, fitted_err, ref = [], [], []
                for j, i in enumerate(found):
                    others = np.arange(len(found)) != j
                    convention = detect.convention_from_pairs(boxes[others], lm_boxes[others])
                    gt = np.asarray(examples[i]["pt3d_68"], np.float64)
                    image = examples[i]["image"]
                    loo.append(nme(image, detect.crop_transform(boxes[j], size, convention), gt))
                    fitted_err.append(nme(image, detect.crop_transform(boxes[j], size, fitted), gt))
                    ref.append(gt_nme[i])
                print(
                    f"|   fitted on these {len(found)} faces: {tuple(fitted)}; "
                    f"NME {100 * np.mean(fitted_err):.2f}% "
                    f"(leave-one-out {100 * np.mean(loo):.2f}%) vs GT crop {100 * np.mean(ref):.2f}%: "
                    f"ratio {np.mean(fitted_err) / np.mean(ref):.3f} (leave-one-out "
                    f"{np.mean(loo) / np.mean(ref):.3f}) |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
