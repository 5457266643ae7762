"""What the tfds builders of datasets/ share: their arguments and the report of a build."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from prn_jax.data import formats


@dataclasses.dataclass
class BuildReport:
    """Image/.mat pairs per source folder, skipped files as (path, key, reason), examples written."""

    images_per_folder: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)
    examples: int = 0

    def record(self, problems: Sequence[formats.FormatError], skip_invalid: bool) -> None:
        """Raise the first problem, or (with `skip_invalid`) list them all as skipped."""
        if problems and not skip_invalid:
            raise problems[0]
        self.skipped += [(p.path, p.key, p.reason) for p in problems]


class FolderBuilderMixin:
    """Arguments of a builder that reads a manual folder (listed before
    `tfds.core.GeneratorBasedBuilder` in the bases): array_record by default, `manual_dir` /
    `model_dir` (default: tfds' manual dir, its model/ folder), `skip_invalid` (skip and report
    bad source files instead of failing) and `batch_size` (fits per ground-truth batch). After
    `download_and_prepare`, `build_report` says what was found and skipped."""

    def __init__(self, *, manual_dir=None, model_dir=None, skip_invalid=False, batch_size=32, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self._manual_dir, self._model_dir = manual_dir, model_dir
        self.skip_invalid, self.batch_size = skip_invalid, batch_size
        self.build_report = BuildReport()

    # tfds prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
    # and "... downloaded and prepared ..." around every build; these builders download nothing
    # (they read local folders) and `prn-jax build` reports what it built itself.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass
