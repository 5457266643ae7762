"""`prn-jax build`: prepare the tfds datasets prn_300w_lp and aflw2000_3d (array_record).

    prn-jax build --data-dir ~/tensorflow_datasets --manual-dir /data/raw --model /data/raw/model
    prn-jax build --data-dir /tmp/tfds --manual-dir /tmp/synth --dataset both --map-size 64

The manual dir holds 300W_LP/ and/or AFLW2000/ (the layout `prn-jax synth` writes); --model is
the folder with BFM.mat + BFM_UV.mat (default: <manual dir>/model for prn_300w_lp; for
aflw2000_3d ground-truth maps are made only when --model is given). Prints the images found
per folder, every skipped file with the reason (--skip-invalid), examples/s and bytes/example.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from prn_jax import cli

DATASETS = ('prn_300w_lp', 'aflw2000_3d')


def _directory_bytes(path: Path) -> int:
  return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())


def build_dataset(name, args, out=None) -> dict:
  """Builds one dataset; returns {'examples', 'seconds', 'bytes', 'report', 'path'}."""
  out = out or sys.stdout
  common = dict(data_dir=str(args.data_dir), manual_dir=args.manual_dir,
                model_dir=args.model, skip_invalid=args.skip_invalid)
  if name == 'prn_300w_lp':
    from datasets.prn_300w_lp import Prn300wLp
    config = f'size{args.map_size}' + ('' if args.flip else '_noflip')
    if args.augmented_copies:
      if not args.flip:
        raise ValueError('--augmented-copies: the augmented configs include the *_Flip folders; '
                         'drop --no-flip')
      config = f'size{args.map_size}_aug{args.augmented_copies}'
    builder = Prn300wLp(config=config, workers=args.workers, **common)
  else:
    from datasets.aflw2000_3d import Aflw20003d
    config = f'maps{args.map_size}' if args.model else 'images'
    builder = Aflw20003d(config=config, **common)
  print(f'build: {name}/{config} -> {builder.data_dir}', file=out)
  start = time.perf_counter()
  builder.download_and_prepare()
  seconds = time.perf_counter() - start
  report = builder.build_report
  examples = sum(split.num_examples for split in builder.info.splits.values())
  size = _directory_bytes(Path(builder.data_dir))
  for folder, count in report.images_per_folder.items():
    print(f'  {folder}: {count} image/.mat pairs', file=out)
  for path, key, reason in report.skipped:
    print(f'  skipped {path}: {key}: {reason}', file=out)
  print(f'  {examples} examples, {len(report.skipped)} skipped, {seconds:.1f} s '
        f'({report.examples / max(seconds, 1e-9):.1f} examples/s this run), '
        f'{size / max(examples, 1):,.0f} bytes/example', file=out)
  return {'examples': examples, 'seconds': seconds, 'bytes': size, 'report': report,
          'path': builder.data_dir}


def run(args) -> int:
  from prn_jax import formats
  names = DATASETS if args.dataset == 'both' else (args.dataset,)
  try:
    for name in names:
      build_dataset(name, args)
  except formats.FormatError as error:
    print(f'prn-jax build: error: {error}\n  (--skip-invalid skips and reports such files)',
          file=sys.stderr)
    return 2
  except ValueError as error:
    print(f'prn-jax build: error: {error}', file=sys.stderr)
    return 2
  return 0


def add_arguments(parser) -> None:
  parser.add_argument('--data-dir', type=Path, required=True, help='tfds data dir (output)')
  parser.add_argument('--manual-dir', type=Path, required=True,
                      help='folder holding 300W_LP/ and/or AFLW2000/')
  parser.add_argument('--model', type=Path, default=None,
                      help='folder with BFM.mat + BFM_UV.mat (default <manual dir>/model for '
                           'prn_300w_lp; aflw2000_3d makes maps only when given)')
  parser.add_argument('--dataset', choices=DATASETS + ('both',), default='prn_300w_lp')
  parser.add_argument('--map-size', type=int, choices=(256, 128, 64), default=256,
                      help='crop and position-map side S')
  parser.add_argument('--flip', action=argparse.BooleanOptionalAction, default=True,
                      help='include the 300W-LP *_Flip folders (default: yes, 122,450 samples)')
  parser.add_argument('--augmented-copies', type=int, choices=(0, 4, 10), default=0,
                      help='prn_300w_lp: also write K seeded augmented copies of every example '
                           '(config size{S}_aug{K}; the training step\'s augmentation, fixed)')
  parser.add_argument('--skip-invalid', action='store_true',
                      help='skip bad source files and list them, instead of failing')
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                      help='processes making 300W-LP examples (default: all cores)')


def register(subparsers) -> None:
  cli.add_command(subparsers, 'build', __doc__, add_arguments, run,
                  help='prepare the tfds datasets (array_record)')


def main(argv=None) -> int:
  return cli.run_command('build', argv)


if __name__ == '__main__':
  raise SystemExit(main())
