"""Write files so that a reader sees the old version or the new one, never half of either."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl


def _umask() -> int:
    """Return the process's umask, read without changing it where Linux says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and put back (at import, on one thread)
    os.umask(mask)
    return mask


# Files are created as ``open`` would create them (0644 under the usual umask), not with
# ``mkstemp``'s private 0600: other tools read them.
_UMASK = _umask()


def _write_through(path: Path) -> bool:
    """Whether ``path`` is to be written straight through rather than replaced: a pipe, a
    terminal or another character device, or a link to one of this process's open files
    (``/dev/stdout``: a rename would put a regular file in its place). Raises ``OSError`` for
    what no output may be (a block device, a socket)."""
    try:
        mode = os.stat(path).st_mode  # follows links
    except OSError:
        return False
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return True
    if str(path).startswith(("/proc/", "/dev/fd/")) or (
            path.is_symlink() and os.readlink(path).startswith(("/proc/", "/dev/fd/"))):
        return True
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise OSError(errno.EINVAL, "not a regular file, a pipe or a terminal", str(path))
    return False


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    if _write_through(path):
        write(path)
        return
    if path.is_symlink():  # replace the file the link names, and keep the link
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # The name's start only: a temporary name must fit where the final one does.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:48]}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    _replace(Path(path), lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    _replace(Path(path), lambda p: p.write_bytes(data))


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` byte for byte, atomically, keeping its permission bits (a
    private input stays private, as ``cp`` keeps it)."""
    import shutil

    def copy(p: Path) -> None:
        shutil.copyfile(src, p)
        shutil.copymode(src, p)

    _replace(Path(dst), copy)


def write_parquet_atomic(df: pl.DataFrame, path: str | Path) -> None:
    """Replace ``path`` with ``df`` as Parquet atomically."""
    _replace(Path(path), lambda p: df.write_parquet(p, statistics=True))


def write_csv_atomic(df: pl.DataFrame, path: str | Path) -> None:
    """Replace ``path`` with ``df`` as CSV atomically."""
    _replace(Path(path), lambda p: df.write_csv(p))
