"""Source files read in place from a folder or from inside a zip archive (no extraction).

A folder source is a `pathlib.Path`, as always; an archive source is a `ZipFolder` (a folder
inside a .zip) holding `ZipMember`s. The two answer the same few questions the builders ask of a
source: `is_dir()`, `glob(pattern)` (direct children only), `/ name`, `.name`, `.stem`,
`is_file()`, `read_bytes()`; `relative_id` gives a file's record key under a root of either kind.
Members are read one at a time through `zipfile` (one open archive per process, reopened after a
fork), so a 300W-LP.zip is streamed, never unpacked to disk. Both classes pickle (they hold the
archive's path and a member name), so worker processes can receive them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIX = ".zip"


@functools.lru_cache(maxsize=8)
def _listing(archive: str, stamp: tuple) -> dict[str, tuple[str, ...]]:
    """{folder: its direct child file names} of an archive ('' = the top); `stamp` = (size,
    mtime) so a replaced archive is listed again."""
    folders: dict[str, list[str]] = {}
    with zipfile.ZipFile(archive) as handle:
        for name in handle.namelist():
            if name.endswith("/"):
                folders.setdefault(name.rstrip("/"), [])
                continue
            parent, _, _ = name.rpartition("/")
            folders.setdefault(parent, []).append(name)
            while parent:  # every ancestor exists as a folder, listed or not
                parent = parent.rpartition("/")[0]
                folders.setdefault(parent, [])
    return {folder: tuple(sorted(names)) for folder, names in folders.items()}


def listing(archive) -> dict[str, tuple[str, ...]]:
    stat = os.stat(archive)
    return _listing(str(archive), (stat.st_size, stat.st_mtime_ns))


_OPEN: dict[str, tuple[int, zipfile.ZipFile]] = {}


def _handle(archive: Path) -> zipfile.ZipFile:
    """This process's open ZipFile of `archive` (a forked child opens its own)."""
    key = str(archive)
    entry = _OPEN.get(key)
    if entry is None or entry[0] != os.getpid():
        entry = (os.getpid(), zipfile.ZipFile(archive))
        _OPEN[key] = entry
    return entry[1]


@dataclasses.dataclass(frozen=True)
class ZipMember:
    """A file inside a zip archive: `member` is its posix path in the archive."""

    archive: Path
    member: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.member).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.member).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.member).suffix

    def is_file(self) -> bool:
        return self.member in listing(self.archive).get(self.member.rpartition("/")[0], ())

    def exists(self) -> bool:
        return self.is_file()

    def read_bytes(self) -> bytes:
        return _handle(self.archive).read(self.member)

    def __str__(self) -> str:  # how errors name it: the archive, then the member
        return f"{self.archive}/{self.member}"


@dataclasses.dataclass(frozen=True)
class ZipFolder:
    """A folder inside a zip archive: `prefix` is its posix path ('' = the archive's top)."""

    archive: Path
    prefix: str = ""

    @property
    def name(self) -> str:
        return PurePosixPath(self.prefix).name if self.prefix else Path(self.archive).stem

    def __truediv__(self, name: str) -> ZipFolder:
        return ZipFolder(self.archive, f"{self.prefix}/{name}" if self.prefix else name)

    def is_dir(self) -> bool:
        return self.prefix in listing(self.archive)

    def glob(self, pattern: str) -> list[ZipMember]:
        """The files directly in this folder whose name matches `pattern` (fnmatch)."""
        names = listing(self.archive).get(self.prefix, ())
        return [
            ZipMember(self.archive, n) for n in names if fnmatch.fnmatchcase(PurePosixPath(n).name, pattern)
        ]

    def __str__(self) -> str:
        return f"{self.archive}/{self.prefix}" if self.prefix else str(self.archive)


def is_archive(path) -> bool:
    return Path(path).suffix.lower() == ARCHIVE_SUFFIX and Path(path).is_file()


def as_source(path):
    """A ZipMember / ZipFolder unchanged, anything else as a Path."""
    return path if isinstance(path, ZipMember | ZipFolder) else Path(path)


def relative_id(root, file) -> str:
    """'<folder>/<stem>': `file`'s posix path under `root` without its suffix (either kind)."""
    if isinstance(file, ZipMember):
        member = PurePosixPath(file.member)
        return (
            member.relative_to(root.prefix).with_suffix("").as_posix()
            if root.prefix
            else (member.with_suffix("").as_posix())
        )
    return Path(file).relative_to(root).with_suffix("").as_posix()


def find_root(manual_dir, folder: str, archives: tuple[str, ...], looks_right):
    """The source root of a dataset: the first candidate for which `looks_right(candidate)` holds,
    among `manual_dir/folder`, `manual_dir`, then inside each of `manual_dir/archive` (or inside
    `manual_dir` itself when it is a .zip file): `folder` in the archive, then its top.
    Returns a Path or a ZipFolder, or None when nothing looks right."""
    manual_dir = Path(manual_dir)
    candidates = []
    if manual_dir.is_dir():
        candidates += [manual_dir / folder, manual_dir]
        candidates += [manual_dir / name for name in archives if is_archive(manual_dir / name)]
    elif is_archive(manual_dir):
        candidates.append(manual_dir)
    for candidate in candidates:
        inner = [ZipFolder(candidate, folder), ZipFolder(candidate)] if is_archive(candidate) else [candidate]
        for root in inner:
            if looks_right(root):
                return root
    return None
