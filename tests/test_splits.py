"""prn_jax.data.splits (300W-LP identities, the held-out rule) and prn_300w_lp's validation split."""

import zlib
from pathlib import Path

import pytest

from prn_jax.data import splits
from prn_jax.datasets.prn_300w_lp import Prn300wLp
from prn_jax.datasets.prn_300w_lp.prn_300w_lp_dataset_builder import Prn300wLpConfig, split_pairs
from prn_jax.synth import datasets, face_generator

SMALL = face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
DATABASES = ("AFW", "HELEN", "IBUG", "LFPW")


@pytest.mark.parametrize(
    "file_id, expected",
    [
        ("AFW/AFW_134212_1_0", "AFW_134212_1"),
        ("AFW_Flip/AFW_134212_1_3", "AFW_134212_1"),
        ("AFW_134212_1_17", "AFW_134212_1"),  # no folder
        ("HELEN/HELEN_232194_1_0", "HELEN_232194_1"),
        ("IBUG_Flip/IBUG_image_003_1_0", "IBUG_image_003_1"),
        ("LFPW/LFPW_image_test_0001_0", "LFPW_image_test_0001"),  # no face index
        ("LFPW_Flip/LFPW_image_test_0001_5#aug3", "LFPW_image_test_0001"),
        ("HELEN/HELEN_synth_00012_1_7", "HELEN_synth_00012_1"),
        ("HELEN_Flip/HELEN_synth_00012_1_7#aug0", "HELEN_synth_00012_1"),
        ("AFW/photo", "photo"),  # no view suffix: its own identity
        ("AFW/photo_front", "photo_front"),
    ],
)
def test_identity(file_id, expected):
    assert splits.identity(file_id) == expected


def test_identity_of_synthetic_names_is_the_subject():
    """`prn-jax synth` names: the views (and mirrors) of a subject share one identity, and
    subjects differ."""
    by_subject = {}
    for index in range(3 * datasets.VIEWS_PER_SUBJECT):
        database, name = datasets.w300lp_name(7, index)
        ids = {splits.identity(f"{folder}/{name}") for folder in (database, database + "_Flip")}
        assert len(ids) == 1
        by_subject.setdefault(index // datasets.VIEWS_PER_SUBJECT, set()).update(ids)
    assert all(len(ids) == 1 for ids in by_subject.values())
    assert len(set.union(*by_subject.values())) == 3


def test_rule_is_the_documented_one_deterministic_and_seeded():
    names = [f"{DATABASES[s % 4]}_synth_{s:05d}_1" for s in range(10_000)]
    held = [splits.is_validation(n, 0.05) for n in names]
    assert 0.04 <= sum(held) / len(names) <= 0.06
    assert held == [splits.is_validation(n, 0.05, seed=0) for n in names]  # deterministic
    # The documented formula (not Python's salted hash()): the same on every machine.
    assert held == [zlib.crc32(f"0/{n}".encode()) % 10_000 < 500 for n in names]
    assert zlib.crc32(b"0/AFW_134212_1") % 10_000 == 4300  # pinned: the rule never drifts
    assert not splits.is_validation("AFW_134212_1", 0.43) and splits.is_validation("AFW_134212_1", 0.4301)
    other = [splits.is_validation(n, 0.05, seed=1) for n in names]
    assert other != held and 0.04 <= sum(other) / len(names) <= 0.06
    # A larger fraction holds out a superset; 0 and 1 hold out nothing and everything.
    more = [splits.is_validation(n, 0.2) for n in names]
    assert all(m for h, m in zip(held, more) if h) and 0.18 <= sum(more) / len(names) <= 0.22
    assert not any(splits.is_validation(n, 0.0) for n in names)
    assert all(splits.is_validation(n, 1.0) for n in names)
    with pytest.raises(ValueError, match="fraction"):
        splits.is_validation("AFW_134212_1", 1.5)


def test_split_of_and_split_pairs_follow_the_identity():
    root = Path("/data/300W_LP")
    names = [f"{DATABASES[s % 4]}_synth_{s:05d}_1_{v}" for s in range(400) for v in range(3)]
    pairs = [
        (root / folder / f"{n}.jpg", root / folder / f"{n}.mat")
        for n in names
        for folder in (n.split("_")[0], n.split("_")[0] + "_Flip")
    ]
    by_split = split_pairs(pairs, root, 0.1, 0)
    assert set(by_split) == {"train", "validation"}
    assert sorted(by_split["train"] + by_split["validation"]) == sorted(pairs)
    for split, members in by_split.items():
        for image, _ in members:
            file_id = image.relative_to(root).with_suffix("").as_posix()
            assert splits.split_of(file_id, 0.1, 0) == split
            assert splits.split_of(file_id + "#aug1", 0.1, 0) == split
    held = {splits.identity(image.stem) for image, _ in by_split["validation"]}
    assert held.isdisjoint(splits.identity(image.stem) for image, _ in by_split["train"])
    assert 20 <= len(held) <= 60  # about 10% of 400 photos


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """20 300W-LP samples (+ flips) of 3 synthetic subjects (8, 8 and 4 views); generation seed 0
    puts subject 1 alone in validation at validation_fraction 0.5, split_seed 0."""
    out = tmp_path_factory.mktemp("split_raw")
    face = face_generator.make_procedural_face(SMALL)
    datasets.generate(face, out, num=20, seed=0, test_num=0, flip=True, workers=1, progress=False)
    return out


def _file_ids(builder):
    builder.download_and_prepare()
    return {
        split: [source[i]["file_id"].decode() for i in range(len(source))]
        for split, source in builder.as_data_source().items()
    }


def test_builder_holds_out_identities(raw, tmp_path):
    """Both splits written, no identity in both, flips with their originals, augmented copies in
    train only, the build report counting both splits; a rebuild assigns the same way."""
    config = Prn300wLpConfig(
        name="split64_aug1", map_size=64, include_flip=True, augmented_copies=1, validation_fraction=0.5
    )
    builder = Prn300wLp(data_dir=tmp_path / "a", config=config, manual_dir=raw, workers=1)
    ids = _file_ids(builder)
    assert set(ids) == {"train", "validation"} and all(ids.values())
    identities = {split: {splits.identity(f) for f in file_ids} for split, file_ids in ids.items()}
    assert identities["train"].isdisjoint(identities["validation"])
    assert len(identities["train"]) == 2 and len(identities["validation"]) == 1
    for split, file_ids in ids.items():
        assert all(splits.split_of(f, 0.5, 0) == split for f in file_ids)
        plain = {f for f in file_ids if "#" not in f}
        originals = {f for f in plain if "_Flip/" not in f}
        flips = {f.replace("_Flip/", "/") for f in plain if "_Flip/" in f}
        assert originals == flips  # every mirror in the split of its original
    assert len(ids["validation"]) == 2 * 8 and not any("#aug" in f for f in ids["validation"])
    assert len(ids["train"]) == 2 * 2 * (8 + 4)  # plain + 1 copy of each train fit
    assert {f"{f}#aug0" for f in ids["train"] if "#" not in f} == {f for f in ids["train"] if "#" in f}
    assert builder.build_report.examples == sum(len(f) for f in ids.values())
    assert sum(builder.build_report.images_per_folder.values()) == 2 * 20 and not builder.build_report.skipped

    again = _file_ids(Prn300wLp(data_dir=tmp_path / "b", config=config, manual_dir=raw, workers=1))
    assert {s: sorted(f) for s, f in again.items()} == {s: sorted(f) for s, f in ids.items()}


def test_builder_leaves_out_an_empty_split(raw, tmp_path):
    """validation_fraction 0: every identity in train, no validation split (tfds cannot write an
    empty one)."""
    config = Prn300wLpConfig(name="split64_none", map_size=64, include_flip=False, validation_fraction=0.0)
    builder = Prn300wLp(data_dir=tmp_path, config=config, manual_dir=raw, workers=1)
    ids = _file_ids(builder)
    assert set(ids) == {"train"} and len(ids["train"]) == 20
    assert set(builder.info.splits) == {"train"}
