"""`prn-jax compare`: compare finished training runs (a sweep root or run folders); the seeds of a
variant (same config but the seed) are aggregated as mean ± sample std.

  prn-jax compare runs/sweep_ratios
  prn-jax compare runs/ratio_16430 runs/ratio_1110 --out runs/ratios_compare

Writes comparison.md (one row per variant: final loss, best validation NME and the test columns
of `prn-jax eval`, plus the mean-face baseline), comparison.csv, learning_curves.png and
ced_<metric>.png into --out (default for one sweep root: ROOT/compare). Every run must be finished,
and either none or all of them test-evaluated on the same data.
"""

from __future__ import annotations

import argparse
import sys

HELP = "compare finished runs: table, learning curves, CEDs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (holding run.json) and/or sweep roots")
    parser.add_argument(
        "--out", default=None, help="output folder (default for a single sweep root: ROOT/compare)"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="test data to compare on when the runs were evaluated on several: fingerprint or data name",
    )


def run(args: argparse.Namespace) -> int:
    from prn_jax.cli import check_output_dir, error_text

    if args.out is not None:
        check_output_dir(args.out, "--out")
    from prn_jax.experiments import compare as compare_lib

    try:
        result = compare_lib.compare(args.runs, args.out, data=args.data)
    except (compare_lib.CompareError, OSError) as e:
        print(f"prn-jax compare: error: {error_text(e)}", file=sys.stderr)
        return 2
    print(f"wrote {result['table']}, {result['csv']} and {len(result['plots'])} plots")
    print()
    print(result["table"].read_text(), end="")
    return 0
