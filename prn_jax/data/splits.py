"""Train / validation split of 300W-LP by identity (source photo).

300W-LP renders many poses (views) of each source photo, and mirrors each in `<DB>_Flip/`;
views of one photo are near-duplicates, so they must never straddle two splits.

Identity of a file id (text, e.g. 'AFW_Flip/AFW_134212_1_3#aug2' -> 'AFW_134212_1'): drop an
offline-augmentation suffix ('#...'), the folder (and with it '_Flip'), and the last '_<digits>'
(the view). Names follow '<DB>_<photo id>[_<face index>]_<view>' ('HELEN_232194_1_0',
'LFPW_image_test_0001_0'); the synthetic sets' '<DB>_synth_<subject>_1_<view>' give one
identity per subject. A name without a '_<digits>' ending is its own identity.

Rule (fixed: the same on every machine, Python version and rebuild): identity `i` is in
validation iff crc32(utf-8 of f"{seed}/{i}") mod 10_000 < round(fraction * 10_000), so a
fraction of the identities (in steps of 1e-4), not of the files, is held out; each fraction's
validation set contains every smaller fraction's (same seed).
"""

from __future__ import annotations

import zlib

BUCKETS = 10_000
TRAIN, VALIDATION = "train", "validation"


def identity(file_id: str) -> str:
    """The source photo of a 300W-LP file id: 'AFW_Flip/AFW_134212_1_3#aug0' -> 'AFW_134212_1'."""
    stem = file_id.split("#", 1)[0].rsplit("/", 1)[-1]
    head, sep, view = stem.rpartition("_")
    return head if sep and head and view.isdigit() else stem


def is_validation(identity: str, fraction: float, seed: int = 0) -> bool:
    """Whether `identity` is held out for validation (module docstring); fraction in [0, 1]."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"validation fraction {fraction!r} not in [0, 1]")
    bucket = zlib.crc32(f"{seed}/{identity}".encode()) % BUCKETS
    return bucket < round(fraction * BUCKETS)


def split_of(file_id: str, fraction: float, seed: int = 0) -> str:
    """'train' or 'validation' for a file id (its identity's split)."""
    return VALIDATION if is_validation(identity(file_id), fraction, seed) else TRAIN
