"""`prn-jax import-weights`: convert PRNet's released TensorFlow checkpoint to a prn-jax weights
file (.npz), for `prn-jax predict --weights`. Needs TensorFlow (`pip install 'prn-jax[tf]'`).

  prn-jax import-weights PRNet/Data/net-data/256_256_resfcn256_weight --out prnet.npz
"""

from __future__ import annotations

import argparse
import sys

HELP = "PRNet's released TF checkpoint -> weights file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="TF checkpoint prefix, e.g. Data/net-data/256_256_resfcn256_weight"
    )
    parser.add_argument("--out", required=True, help="output weights file (.npz)")


def run(args: argparse.Namespace) -> int:
    from prn_jax.cli import check_output_file

    check_output_file(args.out, "--out")
    from prn_jax import model as model_lib
    from prn_jax.model import tf_weights

    try:
        variables = tf_weights.import_tf_checkpoint(args.checkpoint)
    except (ImportError, tf_weights.WeightImportError) as error:
        print(f"prn-jax import-weights: error: {error}", file=sys.stderr)
        return 2
    path = tf_weights.save_weights(args.out, variables)
    count = model_lib.count_params(variables["params"])
    print(
        f"wrote {path}: {count:,} parameters (width {variables['params']['Conv']['kernel'].shape[-1]}); "
        f"use it with prn-jax predict --weights {path}"
    )
    return 0
