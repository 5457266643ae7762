"""`prn-jax bench data-prep`'s table: measured figures as given, scaled ones marked extrapolated
(the measurement itself runs in minutes: README, real-data recipe)."""

from prn_jax.bench import data_prep


def test_table_scales_per_example_figures_and_marks_them_extrapolated():
    build = dict(examples=100, seconds=10.0, cpu_seconds=16.0, record_bytes=2e7, source_bytes=1e6)
    figures = {
        "cores": 2,
        "workers": 2,
        "map_size": 256,
        "prepare_model": {"seconds": 1.5, "cpu_seconds": 1.4, "input_bytes": 3e8, "output_bytes": 3e8},
        "prn_300w_lp": {
            **build,
            "scaled_examples": 122_450,
            "scaled_seconds": 10.0 / 100 * 122_450,
            "scaled_cpu_seconds": 16.0 / 100 * 122_450,
            "scaled_record_bytes": 2e5 * 122_450,
        },
        "aflw2000_3d": {
            **build,
            "scaled_examples": 2_000,
            "scaled_seconds": 200.0,
            "scaled_cpu_seconds": 320.0,
            "scaled_record_bytes": 2e5 * 2_000,
        },
    }
    text = data_prep.table(figures)
    assert text.startswith("2 cores, 2 build workers, maps 256")
    # 12,245 s = 3.4 h; 19,592 CPU s / 8 cores = 40.8 min; 2e5 B x 122,450 = 24.49 GB
    assert "| *3.4 h* (122,450; *40.8 min on 8 cores*) | *24.49 GB* |" in text
    assert "| *3.3 min* (2,000; *0.7 min on 8 cores*) | *0.40 GB* |" in text
    assert "200,000 B/example" in text and "italic" in text
