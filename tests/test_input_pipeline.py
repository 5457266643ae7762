"""Input pipeline (grain over the prn_300w_lp array_record files) and `prn-jax show-batch`."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from prn_jax import cli, configuration, geometry
from prn_jax.data import formats, input_pipeline, show_batch
from prn_jax.datasets.prn_300w_lp import Prn300wLp
from prn_jax.synth import datasets, face_generator

SMALL = face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
SIZE = 64
NUM_RECORDS = 24  # 12 samples + their flips
BATCH = 8  # 3 steps per epoch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A built prn_300w_lp/size64 of 24 records: (tfds data dir, raw dir, records by index)."""
    root = tmp_path_factory.mktemp("pipeline")
    face = face_generator.make_procedural_face(SMALL)
    datasets.generate(face, root / "raw", num=NUM_RECORDS // 2, seed=5, flip=True, workers=1, progress=False)
    Prn300wLp(
        data_dir=root / "tfds", config=f"size{SIZE}", manual_dir=root / "raw", workers=1
    ).download_and_prepare()
    config = _config()
    source = input_pipeline.open_source(root / "tfds", input_pipeline.DataSettings.from_config(config))
    records = [source[i] for i in range(len(source))]
    return root / "tfds", root / "raw", records


def _config(**data):
    config = configuration.load_config("tiny")
    config.batch_size = BATCH
    for key, value in data.items():
        config.data[key] = value
    return config


def _take(loader, count):
    return [next(loader) for _ in range(count)]


def _record_ids(batch, records):
    """(devices, per-device) record indices of a batch, found by the image pixels."""
    by_image = {r["image"].tobytes(): i for i, r in enumerate(records)}
    assert len(by_image) == len(records)  # the images identify the records
    images = batch["image"]
    return np.array([[by_image[x.tobytes()] for x in device] for device in images])


def test_shapes_dtypes_and_values(data):
    data_dir, _, records = data
    assert input_pipeline.num_examples(data_dir, _config()) == NUM_RECORDS
    batch = next(input_pipeline.make_train_loader(_config(), data_dir, num_local_devices=2))
    assert set(batch) == {"image", "pos_map"}
    assert batch["image"].shape == (2, 4, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
    assert batch["pos_map"].shape == (2, 4, SIZE, SIZE, 3) and batch["pos_map"].dtype == np.float32
    ids = _record_ids(batch, records)
    expected = formats.decode_position_map(records[ids[1, 2]]["position_map"], SIZE)
    np.testing.assert_array_equal(batch["pos_map"][1, 2], expected)

    params = next(
        input_pipeline.make_train_loader(_config(maps_on_device=True), data_dir, num_local_devices=4)
    )
    assert set(params) == {"image", *input_pipeline.PARAM_FIELDS}
    assert params["pose"].shape == (4, 2, 7) and params["shape"].shape == (4, 2, SMALL.num_shape)
    assert params["expression"].shape == (4, 2, SMALL.num_exp)
    assert params["crop_transform"].shape == (4, 2, 3, 3) and params["image_height"].shape == (4, 2)
    assert all(v.dtype == np.float32 for k, v in params.items() if k != "image")
    ids = _record_ids(params, records)
    np.testing.assert_array_equal(params["pose"][3, 1], records[ids[3, 1]]["pose"])


def test_maps_rendered_on_the_device_equal_the_stored_maps(data):
    """Ground truth on the device (fits + stored crop -> jitted render) reproduces the builder's
    stored maps within the storage tolerance (S / 65536 px) plus float32 rounding."""
    data_dir, raw, records = data
    model = geometry.load_face_model(raw / "model" / "BFM.mat", raw / "model" / "BFM_UV.mat")
    raster = geometry.build_uv_raster(model.uv, model.full_triangles, SIZE)
    arrays = jax.device_put(geometry.fit_render_arrays(model, raster))
    render = jax.jit(geometry.position_maps_from_fits)
    fits = next(input_pipeline.make_train_loader(_config(maps_on_device=True), data_dir))
    fits = {k: v[0] for k, v in fits.items()}  # one device
    maps = np.asarray(
        render(
            arrays,
            fits["pose"],
            fits["shape"],
            fits["expression"],
            fits["crop_transform"],
            fits["image_height"],
        )
    )
    ids = _record_ids({"image": fits["image"][None]}, records)[0]
    stored = np.stack([formats.decode_position_map(records[i]["position_map"], SIZE) for i in ids])
    assert maps.shape == stored.shape == (BATCH, SIZE, SIZE, 3)
    outside = ~raster.mask
    assert not maps[:, outside].any() and not stored[:, outside].any()
    error = np.abs(maps - stored).max()
    assert error <= SIZE / 65536 + 2e-4, error
    assert np.abs(stored).max() > SIZE / 4  # real maps, not zeros


def test_order_is_seeded_and_epochs_cover_the_data(data):
    data_dir, _, records = data
    steps = 2 * NUM_RECORDS // BATCH  # two epochs

    def order(seed):
        loader = input_pipeline.make_train_loader(_config(), data_dir, seed=seed)
        return np.concatenate([_record_ids(b, records).ravel() for b in _take(loader, steps)])

    first, again, other = order(0), order(0), order(1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    for epoch in range(2):  # every epoch visits each record once, in the documented order
        visited = first[epoch * NUM_RECORDS : (epoch + 1) * NUM_RECORDS]
        np.testing.assert_array_equal(visited, input_pipeline.epoch_permutation(0, epoch, NUM_RECORDS))
    assert not np.array_equal(first[:NUM_RECORDS], first[NUM_RECORDS:])  # reshuffled


def test_drop_remainder_each_epoch():
    order = input_pipeline.ProcessOrder(
        num_records=10, global_batch=4, process_index=0, process_count=1, seed=3
    )
    assert order.steps_per_epoch == 2
    seen = [order[j] for j in range(16)]  # two epochs of 2 steps of 4
    np.testing.assert_array_equal(seen[:8], input_pipeline.epoch_permutation(3, 0, 10)[:8])
    np.testing.assert_array_equal(seen[8:], input_pipeline.epoch_permutation(3, 1, 10)[:8])


def test_process_shards_are_disjoint_and_cover_the_epoch(data):
    data_dir, _, records = data
    steps = NUM_RECORDS // BATCH
    single = _take(input_pipeline.make_train_loader(_config(), data_dir), steps)
    shards = [
        _take(input_pipeline.make_train_loader(_config(), data_dir, process_index=p, process_count=2), steps)
        for p in (0, 1)
    ]
    ids = [np.concatenate([_record_ids(b, records).ravel() for b in shard]) for shard in shards]
    assert all(len(x) == NUM_RECORDS // 2 for x in ids)
    assert not set(ids[0]) & set(ids[1])
    assert set(ids[0]) | set(ids[1]) == set(range(NUM_RECORDS))
    for step in range(steps):  # together the processes see exactly the one-process batches
        joined = np.concatenate([shards[0][step]["image"][0], shards[1][step]["image"][0]])
        np.testing.assert_array_equal(joined, single[step]["image"][0])


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_resume_through_state_and_orbax(data, tmp_path):
    data_dir, _, _ = data
    config = _config()
    k, more = 2, 5  # crosses an epoch boundary after the restore
    loader = input_pipeline.make_train_loader(config, data_dir, num_local_devices=2)
    _take(loader, k)
    state = loader.get_state()
    manager = ocp.CheckpointManager(
        tmp_path / "ckpt", options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False)
    )
    train_state = {"w": np.arange(3.0)}
    manager.save(
        k,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(train_state), data=input_pipeline.checkpoint_args_save(loader)
        ),
    )
    manager.wait_until_finished()
    uninterrupted = _take(loader, more)

    fresh = input_pipeline.make_train_loader(config, data_dir, num_local_devices=2)
    fresh.set_state(state)
    _assert_same_batches(_take(fresh, more), uninterrupted)

    restored_loader = input_pipeline.make_train_loader(config, data_dir, num_local_devices=2)
    restored = manager.restore(
        k,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(train_state),
            data=input_pipeline.checkpoint_args_restore(restored_loader),
        ),
    )
    np.testing.assert_array_equal(restored["state"]["w"], train_state["w"])
    _assert_same_batches(_take(restored_loader, more), uninterrupted)
    manager.close()


def test_worker_processes_give_the_same_batches(data):
    data_dir, _, _ = data
    threads = _take(input_pipeline.make_train_loader(_config(num_threads=1), data_dir), 4)
    workers = input_pipeline.make_train_loader(_config(worker_count=2), data_dir)
    try:
        _assert_same_batches(_take(workers, 4), threads)
    finally:
        workers.close()  # stops the worker processes now, not at garbage collection


def test_bad_inputs_name_the_problem(data, tmp_path):
    data_dir, _, _ = data
    with pytest.raises(FileNotFoundError, match="prn_300w_lp/size64"):
        input_pipeline.make_train_loader(_config(), tmp_path / "empty")
    with pytest.raises(ValueError, match="batch_size"):
        input_pipeline.make_train_loader(_config(), data_dir, num_local_devices=3)
    with pytest.raises(ValueError, match="config.data.num_threads"):
        input_pipeline.make_train_loader(_config(num_threads=0), data_dir)
    wrong_size = _config()
    wrong_size.data.builder_config = "size64"
    wrong_size.image_size = 128
    with pytest.raises(formats.FormatError, match="image"):
        next(input_pipeline.make_train_loader(wrong_size, data_dir))


def test_show_batch_writes_png(data, tmp_path):
    data_dir, raw, _ = data
    out = tmp_path / "grid.png"
    assert (
        cli.main(
            ["show-batch"]
            + [
                "--data",
                str(data_dir),
                "--model",
                str(raw / "model"),
                "--num",
                "5",
                "--out",
                str(out),
                "--config.batch_size=8",
            ]
        )
        == 0
    )
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.size == (3 * show_batch.TILE, 2 * show_batch.TILE)  # 5 tiles in a 3 x 2 grid
        pixels = np.asarray(png.convert("RGB"))
    assert pixels[: show_batch.TILE].std() > 10  # images, not a blank sheet
    assert ((pixels == (0, 255, 0)).all(-1)).sum() > 5 * 20  # the landmark dots are drawn


def test_raw_crops_stream_without_decoding_and_match_the_jpeg_build(data, tmp_path):
    """`prn-jax build --raw-crops` (`size64_raw`) stores the crops' pixels: the pipeline reads uint8
    arrays (no image decode), every other field as in the JPEG build, the pixels within JPEG 95's
    error of its crops."""
    data_dir, raw, records = data
    build = ["build", "--data-dir", str(tmp_path), "--manual-dir", str(raw), "--map-size", str(SIZE)]
    assert cli.main([*build, "--raw-crops", "--workers", "1"]) == 0
    assert (tmp_path / "prn_300w_lp" / f"size{SIZE}_raw").is_dir()
    raw_config = _config(builder_config=f"size{SIZE}_raw")
    source = input_pipeline.open_source(tmp_path, input_pipeline.DataSettings.from_config(raw_config))
    assert len(source) == len(records)
    by_id = {r["file_id"]: r for r in records}
    for i in range(len(source)):
        record = source[i]
        jpeg = by_id[record["file_id"]]
        assert isinstance(record["image"], np.ndarray) and record["image"].dtype == np.uint8
        assert record["image"].shape == (SIZE, SIZE, 3)
        assert np.abs(record["image"].astype(int) - jpeg["image"]).mean() < 6  # measured 3.0
        assert record["position_map"] == jpeg["position_map"]
        np.testing.assert_array_equal(record["pose"], jpeg["pose"])
    streamed = next(input_pipeline.make_train_loader(raw_config, tmp_path, num_local_devices=2))
    assert streamed["image"].shape == (2, 4, SIZE, SIZE, 3) and streamed["image"].dtype == np.uint8
    assert streamed["pos_map"].dtype == np.float32
