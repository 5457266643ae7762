"""`prn-jax build` reads 300W-LP.zip and AFLW2000-3D.zip in place (issue 26): the same records as
from the unpacked folders, nothing written beside the archives, a missing 300W-LP database named
with the expected list (never skipped), `--subsets` to build from part of it, and a source
fingerprint that covers archives."""

from __future__ import annotations

import pickle
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from prn_jax import cli
from prn_jax.data import build, formats, source_tree
from prn_jax.datasets.prn_300w_lp import prn_300w_lp_dataset_builder as w300lp


def _zip(folder, archive):
    """`archive` holding `folder` under its own name, with folder entries (as the downloads)."""
    shutil.make_archive(str(archive.with_suffix("")), "zip", root_dir=folder.parent, base_dir=folder.name)
    return archive


@pytest.fixture(scope="module")
def downloads(tiny_synth_tfds, tmp_path_factory):
    """A downloads folder holding only the two archives of the tiny synthetic sets."""
    folder = tmp_path_factory.mktemp("downloads")
    _zip(tiny_synth_tfds["raw"] / "300W_LP", folder / "300W-LP.zip")
    _zip(tiny_synth_tfds["raw"] / "AFLW2000", folder / "AFLW2000-3D.zip")
    return folder


def _records(directory) -> dict:
    """{split: {file_id: record}} of a built tfds dataset directory."""
    builder = tfds.builder_from_directory(str(directory))
    out = {}
    for split, source in builder.as_data_source().items():
        out[split] = {r["file_id"].decode(): r for r in (source[i] for i in range(len(source)))}
    return out


def _assert_same_records(a, b):
    assert a.keys() == b.keys() and all(len(a[s]) for s in a)
    for split in a:
        assert a[split].keys() == b[split].keys(), split
        for key, record in a[split].items():
            other = b[split][key]
            assert record.keys() == other.keys()
            for field, value in record.items():
                if isinstance(value, bytes):
                    assert value == other[field], (key, field)
                else:
                    np.testing.assert_array_equal(value, other[field], err_msg=f"{key} {field}")


def _only_dataset_dirs(path):
    return sorted(p.name for p in path.iterdir())


def test_build_from_the_archives_equals_build_from_the_folders(tiny_synth_tfds, downloads, tmp_path, capsys):
    before = sorted(p.name for p in downloads.rglob("*"))
    argv = ["build", "--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(downloads)]
    argv += ["--model", str(tiny_synth_tfds["model"]), "--dataset", "both", "--map-size", "64"]
    assert cli.main([*argv, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "AFLW2000: 4 image/.mat pairs" in out
    assert sorted(p.name for p in downloads.rglob("*")) == before  # nothing unpacked beside them
    for name, config in (("prn_300w_lp", "size64"), ("aflw2000_3d", "maps64")):
        (zipped,) = (tmp_path / "tfds" / name / config).iterdir()
        (folder,) = (tiny_synth_tfds["tfds"] / name / config).iterdir()
        _assert_same_records(_records(zipped), _records(folder))
    # the fingerprint stored beside the records is the archives' (a second run reuses them)
    assert cli.main([*argv, "--workers", "1"]) == 0
    assert "reusing" in capsys.readouterr().out


def test_zip_members_answer_like_paths_and_pickle(tiny_synth_tfds, downloads):
    root = w300lp.source_root(downloads)
    assert isinstance(root, source_tree.ZipFolder) and root.prefix == "300W_LP"
    folder_root = w300lp.source_root(tiny_synth_tfds["raw"])
    pairs, counts, problems = w300lp.list_sources(root, include_flip=True)
    folder_pairs, folder_counts, _ = w300lp.list_sources(folder_root, include_flip=True)
    assert counts == folder_counts and problems == [] and len(pairs) == 16
    image, mat = pairs[0]
    assert w300lp.file_id_of(root, image) == w300lp.file_id_of(folder_root, folder_pairs[0][0])
    assert image.read_bytes() == folder_pairs[0][0].read_bytes()
    assert pickle.loads(pickle.dumps(image)) == image  # workers receive members
    fit = formats.read_300w_lp_fit(mat)
    np.testing.assert_array_equal(fit.pose, formats.read_300w_lp_fit(folder_pairs[0][1]).pose)
    # a manual dir that is the archive itself works too; a broken member is named inside it
    assert w300lp.source_root(downloads / "300W-LP.zip") == root
    missing = source_tree.ZipMember(downloads / "300W-LP.zip", "300W_LP/AFW/nothing.mat")
    with pytest.raises(
        formats.FormatError, match=r"300W-LP\.zip/300W_LP/AFW/nothing\.mat: \.mat: file missing"
    ):
        formats.read_mat(missing)


def _without_database(downloads, tmp_path, database):
    """A copy of 300W-LP.zip without `database` and its _Flip folder."""
    archive = tmp_path / "300W-LP.zip"
    with zipfile.ZipFile(downloads / "300W-LP.zip") as src, zipfile.ZipFile(archive, "w") as dst:
        for info in src.infolist():
            if info.filename.split("/")[1] not in (database, database + "_Flip"):
                dst.writestr(info, src.read(info))
    return archive


def _populated_database(tiny_synth_tfds):
    counts = {
        db: len(list((tiny_synth_tfds["raw"] / "300W_LP" / db).glob("*.jpg")))
        for db in formats.W300LP_DATABASES
    }
    return max(counts, key=counts.get), [db for db, n in counts.items() if n == 0]


def test_a_missing_database_is_named_with_the_expected_list_and_subsets_build_the_rest(
    tiny_synth_tfds, downloads, tmp_path, capsys
):
    populated, empty = _populated_database(tiny_synth_tfds)
    gone = empty[0]
    source = tmp_path / "src"
    source.mkdir()
    _without_database(downloads, source, gone)
    argv = ["build", "--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(source)]
    argv += ["--model", str(tiny_synth_tfds["model"]), "--map-size", "64", "--workers", "1"]
    for extra in ([], ["--skip-invalid"]):  # never skipped: it is not a bad file
        assert cli.main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"missing {gone}, {gone}_Flip; expected AFW, HELEN" in err, err
        assert "--subsets" in err
    subsets = [db for db in formats.W300LP_DATABASES if db != gone]
    assert cli.main([*argv, "--subsets", ",".join(subsets)]) == 0
    assert f"  {populated}_Flip: 8 image/.mat pairs" in capsys.readouterr().out
    (built,) = (tmp_path / "tfds" / "prn_300w_lp" / "size64").iterdir()
    assert sum(len(r) for r in _records(built).values()) == 16
    # the same data dir from all of 300W-LP is another source: refused without --force
    stored = (built / build.SOURCE_FILE).read_text()
    assert '"subsets"' in stored
    full = ["build", "--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(downloads)]
    assert cli.main([*full, "--model", str(tiny_synth_tfds["model"]), "--map-size", "64"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main([*argv, "--subsets", "AFW,NOPE"]) == 2
    assert "--subsets NOPE: choose from AFW,HELEN,IBUG,LFPW" in capsys.readouterr().err


def test_fingerprint_covers_an_archive(downloads, tmp_path):
    archive = tmp_path / "300W-LP.zip"
    shutil.copy(downloads / "300W-LP.zip", archive)
    first = build.source_fingerprint(archive)
    assert first["files"] == 1 and first["bytes"] == archive.stat().st_size
    assert build.source_fingerprint(tmp_path) == {**first, "sha1": build.source_fingerprint(tmp_path)["sha1"]}
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr("300W_LP/AFW/extra.txt", "another file")
    assert build.source_fingerprint(archive)["sha1"] != first["sha1"]
