"""Import of PRNet's released TensorFlow checkpoint (`256_256_resfcn256_weight`) into Flax variables.

The released checkpoint holds 245 network variables (docs/network.md lists them by scope:
`resfcn256/.../weights`, `.../BatchNorm/{gamma,beta,moving_mean,moving_variance}`) plus Adam slots
(`.../Adam`, `.../Adam_1`) and the optimiser's `beta1_power` / `beta2_power`, which are dropped.

Mapping: by name (`model.tf_variable_name`), one-to-one, every shape checked. No array is
transformed: encoder kernels are HWIO in both frameworks, and `model.ConvTransposeBN` keeps
decoder kernels in TF's conv2d_transpose layout (kh, kw, out, in) and applies them exactly as
`tf.nn.conv2d_transpose(padding='SAME')` does (`decoder_ops.conv_transpose_tf`; checked
numerically in tests/test_tf_weights.py and, against TensorFlow itself, by
benchmarks/tf_forward_parity.py).

Weights file (`prn-jax import-weights CKPT --out FILE.npz`, read by `prn-jax predict --weights`):
an `.npz` of float32 arrays keyed by the TF variable names, i.e. `variables_from_tf_arrays`'s
input; TensorFlow is needed only to write it.

  pip install 'prn-jax[tf]'
  prn-jax import-weights Data/net-data/256_256_resfcn256_weight --out prnet_official.npz
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from prn_jax import model as model_lib

SCOPE = "resfcn256/"
_OPTIMIZER_SLOTS = ("Adam", "Adam_1")
_SHOWN = 5  # names listed per kind of problem in an error message


class WeightImportError(ValueError):
    """Named variables are missing, unexpected or of the wrong shape (one-line message)."""


def expected_tf_shapes(width: int = 16, image_size: int = 256) -> dict[str, tuple[int, ...]]:
    """TF name -> shape of every variable of `ResFCN256(width)` (no compilation, no FLOPs)."""
    network = model_lib.ResFCN256(width=width)
    abstract = jax.eval_shape(lambda: model_lib.init_variables(network, jax.random.key(0), image_size))
    return model_lib.tf_variable_shapes(abstract)


def _listing(names) -> str:
    names = sorted(names)
    more = f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def variables_from_tf_arrays(
    named_arrays: Mapping[str, np.ndarray], width: int = 16, image_size: int = 256, source: str = "weights"
) -> dict:
    """TF-named arrays -> Flax variables {'params', 'batch_stats'} of `ResFCN256(width)`.

    Args:
      named_arrays: {TF variable name ('resfcn256/resBlock_3/Conv_1/weights'): array}, exactly the
        model's variables (optimiser slots already dropped; see `network_variables`).
      width: base width of the network (16 for the released model).
      image_size: S; only used to build the variable template (the network is fully
        convolutional, its variables do not depend on S).
      source: what the arrays came from, for error messages (a file name).

    Returns:
      {'params': ..., 'batch_stats': ...} float32 numpy arrays, ready for `model.apply`.

    Raises:
      WeightImportError naming every missing, unexpected or mis-shaped variable.
    """
    network = model_lib.ResFCN256(width=width)
    template = jax.eval_shape(lambda: model_lib.init_variables(network, jax.random.key(0), image_size))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [model_lib.tf_variable_name(tuple(k.key for k in path)) for path, _ in leaves]
    missing = [n for n in names if n not in named_arrays]
    unexpected = [n for n in named_arrays if n not in set(names)]
    mismatched = [
        f"{n} has shape {tuple(np.shape(named_arrays[n]))}, expected {tuple(leaf.shape)}"
        for n, (_, leaf) in zip(names, leaves)
        if n in named_arrays and tuple(np.shape(named_arrays[n])) != tuple(leaf.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"wrong shape {len(mismatched)}: {_listing(mismatched)}")
    if problems:
        raise WeightImportError(f"{source}: not resfcn256 width {width} variables; " + "; ".join(problems))
    arrays = [np.asarray(named_arrays[n], np.float32) for n in names]
    return jax.tree_util.tree_unflatten(treedef, arrays)


def tf_arrays_from_variables(variables: Mapping) -> dict[str, np.ndarray]:
    """Inverse of `variables_from_tf_arrays`: {TF name: float32 numpy array}."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(variables))[0]
    return {
        model_lib.tf_variable_name(tuple(k.key for k in path)): np.asarray(leaf, np.float32)
        for path, leaf in flat
    }


def infer_width(named_arrays: Mapping[str, np.ndarray], source: str = "weights") -> int:
    """Base width from the first convolution `resfcn256/Conv/weights` (4, 4, 3, width)."""
    name = SCOPE + "Conv/weights"
    if name not in named_arrays:
        raise WeightImportError(f"{source}: no variable {name} (not a resfcn256 checkpoint)")
    shape = tuple(np.shape(named_arrays[name]))
    if len(shape) != 4 or shape[:3] != (4, 4, 3):
        raise WeightImportError(f"{source}: {name} has shape {shape}, expected (4, 4, 3, width)")
    return int(shape[3])


def network_variables(named_arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keeps the network's variables (under `resfcn256/`), drops Adam slots and optimiser state."""
    return {
        n: a
        for n, a in named_arrays.items()
        if n.startswith(SCOPE) and n.rsplit("/", 1)[-1] not in _OPTIMIZER_SLOTS
    }


def read_tf_checkpoint(path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint (prefix path, e.g. `.../256_256_resfcn256_weight`)."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            "reading a TensorFlow checkpoint needs TensorFlow: pip install 'prn-jax[tf]' "
            "(or pip install tensorflow-cpu)"
        ) from error
    try:
        reader = tf.train.load_checkpoint(str(path))
    except Exception as error:  # TF raises NotFoundError / DataLossError / ValueError
        raise WeightImportError(
            f"{path}: cannot read as a TensorFlow checkpoint "
            f"({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error
    return {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}


def import_tf_checkpoint(path, width: int | None = None, image_size: int = 256) -> dict:
    """PRNet's TF checkpoint -> Flax variables {'params', 'batch_stats'} (width inferred by default)."""
    arrays = network_variables(read_tf_checkpoint(path))
    width = infer_width(arrays, str(path)) if width is None else width
    return variables_from_tf_arrays(arrays, width, image_size, source=str(path))


def save_weights(path, variables: Mapping) -> Path:
    """Writes the weights file (TF-named float32 arrays, module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez(f, **tf_arrays_from_variables(variables))
    return path


def load_weights(path, image_size: int = 256) -> tuple[int, dict]:
    """Reads a weights file -> (width, {'params', 'batch_stats'}); WeightImportError names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file missing")
    try:
        with np.load(path) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as error:  # zipfile / pickle / ValueError for a non-npz file
        raise WeightImportError(f"{path}: not a .npz weights file ({type(error).__name__})") from error
    width = infer_width(arrays, str(path))
    return width, variables_from_tf_arrays(arrays, width, image_size, source=str(path))
