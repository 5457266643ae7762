"""Packaging: configs/ and datasets/ are installed inside the package (prn_jax.configs,
prn_jax.datasets), never as top-level `configs` / `datasets`; configs and builders work from a
clone and from an installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_pyproject_lists_every_package_of_the_tree():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO).parts[:-1]) for p in (REPO / "prn_jax").rglob("__init__.py")}
    found |= {
        "prn_jax." + ".".join(p.relative_to(REPO).parts[:-1])
        for folder in ("configs", "datasets")
        for p in (REPO / folder).rglob("__init__.py")
    }
    assert listed == found


def test_no_top_level_datasets_or_configs_package(tmp_path):
    out = _run("import importlib.util as u; print(u.find_spec('datasets'), u.find_spec('configs'))", tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(REPO) not in out.stdout  # Hugging Face `datasets`, if installed, is not shadowed
    # Run from the checkout itself, the folders refuse to be imported under the top-level name.
    out = _run("import datasets", REPO)
    assert out.returncode != 0 and "importable only as prn_jax.datasets" in out.stderr


def test_configs_and_builders_load_by_name_and_path_from_anywhere(tmp_path):
    code = (
        "from prn_jax import configuration\n"
        "from prn_jax.datasets.prn_300w_lp import Prn300wLp\n"
        "a = configuration.load_config('paper')\n"
        f"b = configuration.load_config({str(REPO / 'configs' / 'tiny.py')!r})\n"
        "print(a.image_size, b.image_size, Prn300wLp.name)\n"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["256", "64", "prn_300w_lp"]


@pytest.mark.slow
def test_installed_wheel_has_configs_and_builders(tmp_path):
    """Build the wheel, install it (no dependencies: this venv has them) into a folder, and load
    a config by name and a builder from it, with the checkout nowhere on the path."""
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(wheel_dir.glob("prn_jax-*.whl"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert not (site / "configs").exists() and not (site / "datasets").exists()
    assert (site / "prn_jax" / "configs" / "paper.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import prn_jax, prn_jax.configs\n"
        "from prn_jax import configuration\n"
        "from prn_jax.datasets.aflw2000_3d import Aflw20003d\n"
        "print(prn_jax.__file__, configuration.load_config('cpu_default').image_size, Aflw20003d.name)\n"
    )
    out = _run(code, tmp_path, env)
    assert out.returncode == 0, out.stderr
    path, size, name = out.stdout.split()
    assert path.startswith(str(site)) and size == "64" and name == "aflw2000_3d"
