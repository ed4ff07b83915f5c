"""Write files so that a reader sees the old version or the new one, never half of either."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import polars as pl


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


def _target(path: Path) -> Path:
    """Return the file a rename replaces for ``path``: the one a link names (the link is
    kept), with its folder made."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_MADE: set[Path] = set()  # this process's temporary files not yet renamed or removed


def _temp_beside(path: Path, suffix: str = ".tmp") -> Path:
    """Create an empty temporary file in ``path``'s folder, with ``open``'s permissions.

    Its name, ``.<name>.<pid>.<8 random hex digits><suffix>``, says which process writes it,
    so that ``sweep_temporaries`` can tell a file a killed run left from one being written.
    It is recorded (for ``sweep_own``) before it exists: an interrupt lands between any two
    steps, and one between its making and its caller's record of it left it behind.
    """
    while True:
        # The name's start only: a temporary name must fit where the final one does.
        tmp = path.parent / f".{path.name[:48]}.{os.getpid()}.{os.urandom(4).hex()}{suffix}"
        _MADE.add(tmp)
        try:  # ``open``'s mode: 0666 less the umask (mkstemp's was a private 0600)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # another's
            _MADE.discard(tmp)
            continue
        except OSError:  # not made (an interrupt keeps it recorded: it may have been)
            _MADE.discard(tmp)
            raise
        os.close(fd)
        return tmp


# ``_temp_beside``'s names: the new version (.tmp) or, in ``replace_together``, the old one
# kept aside (.old).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.(?:tmp|old)",
                        re.DOTALL)  # a file's name may hold a line end


def _running(pid: int) -> bool:
    """Whether a process numbered ``pid`` runs on this machine (another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # not ours to signal, or no such number: leave it be
        return True
    return True


def sweep_own() -> list[Path]:
    """Delete this process's temporary files still there, and return them: called once its
    command is over, when none of its writes can be under way. An interrupt that lands
    between a temporary file's making and its writer's record of it (which its clean-up
    reads) left the file: a probe aimed at the KPI tables' writes saw it 2 times in 20.
    Only the paths it made are looked at: another process may have its number (another
    PID namespace: two containers' commands are both process 1)."""
    gone = []
    for tmp in sorted(_MADE):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            tmp.unlink()
            gone.append(tmp)
        _MADE.discard(tmp)
    return gone


def sweep_temporaries(folder: Path, of: Collection[str] | None = None) -> list[Path]:
    """Delete the temporary files of writes into ``folder`` whose process no longer runs
    (killed while it wrote: SIGKILL, the kernel out of memory, the machine stopped);
    return their paths. The output itself was whole: the old version, or the new one.

    Only names ``_temp_beside`` makes are looked at, and with ``of``, only those of writes
    to these file names; one whose process still runs (or whose number another process has
    taken since) is kept. A process number says nothing of another machine's or PID
    namespace's processes: call it where no writer of theirs can be at work, for files that
    only the holder of the lake's lock writes."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no such folder (yet), or not one: nothing to sweep
        return removed
    for e in entries:
        m = _TEMPORARY.fullmatch(e.name)
        if (m is None or (of is not None and m["name"] not in of)
                or not e.is_file(follow_symlinks=False) or _running(int(m["pid"]))):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e.path)
            removed.append(Path(e.path))
    return removed


def _write_synced(tmp: Path, write: Callable[[Path], object]) -> None:
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    if _write_through(path):
        write(path)
        return
    path = _target(path)
    tmp_path = _temp_beside(path)
    try:
        _write_synced(tmp_path, write)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        _MADE.discard(tmp_path)  # renamed into place, or removed


def replace_together(writes: Sequence[tuple[Path, Callable[[Path], object]]]) -> None:
    """Replace each path with what its function writes there, all of them or none.

    Every new version is written and synced first; the old ones are kept aside (a hard
    link, or a copy where links are refused); then the renames run. When one fails (a file
    made immutable, a folder in a file's place), the paths already renamed get their old
    version back before the error is raised, so a reader never finds one table new and
    another old after a failed run. A crash between the renames can still leave some new
    and some old, each whole. A pipe or terminal among the paths is written last, through.
    """
    through: list[tuple[Path, Callable[[Path], object]]] = []
    files: list[tuple[Path, Callable[[Path], object]]] = []
    for p, write in writes:
        (through if _write_through(Path(p)) else files).append((Path(p), write))
    targets = [_target(p) for p, _ in files]
    if len(set(targets)) < len(targets):  # a link to another of them: two outputs, one file
        twice = next(t for t in targets if targets.count(t) > 1)
        raise OSError(errno.EINVAL, "two of the outputs are this one file", str(twice))
    staged: list[tuple[Path, Path]] = []  # (new version, target)
    kept: dict[Path, Path | None] = {}  # target -> its old version aside (None: none was)
    try:
        for target, (_, write) in zip(targets, files, strict=True):
            staged.append((_temp_beside(target), target))
            _write_synced(staged[-1][0], write)
        for _, target in staged:
            kept[target] = None
            if os.path.lexists(target):
                aside = _temp_beside(target, ".old")
                kept[target] = aside
                aside.unlink()  # the name is ours; a link needs it free
                try:
                    os.link(target, aside)
                except OSError:
                    import shutil

                    # its mode too, as it goes back; a folder in the file's place fails here
                    shutil.copy2(target, aside)
        renamed: list[Path] = []
        try:
            for tmp, target in staged:
                os.replace(tmp, target)
                renamed.append(target)
        except BaseException:
            for target in reversed(renamed):
                old = kept[target]
                if old is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(old, target)  # ``old`` is gone: the ``finally`` forgets it
            raise
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
            _MADE.discard(tmp)
        for old in kept.values():
            if old is not None:
                old.unlink(missing_ok=True)
                _MADE.discard(old)
    for p, write in through:
        write(p)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_text_chunks_atomic(path, (text,))


def write_text_chunks_atomic(path: str | Path, chunks: Iterable[str]) -> None:
    """Replace ``path`` atomically with the UTF-8 text of ``chunks``, written as they come."""
    _replace(Path(path), text_writer(chunks))


def text_writer(chunks: Iterable[str]) -> Callable[[Path], None]:
    """Return what writes the UTF-8 text of ``chunks`` to a path, as they come (for
    ``replace_together``)."""
    def write(p: Path) -> None:
        with open(p, "w", encoding="utf-8", newline="") as f:
            f.writelines(chunks)

    return write


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


def parquet_writer(df: pl.DataFrame) -> Callable[[Path], object]:
    """Return what writes ``df`` as the project's Parquet (with statistics) to a path."""
    return lambda p: df.write_parquet(p, statistics=True)


def write_parquet_atomic(df: pl.DataFrame, path: str | Path) -> None:
    """Replace ``path`` with ``df`` as Parquet atomically."""
    _replace(Path(path), parquet_writer(df))


def csv_writer(frames: Iterable[pl.DataFrame]) -> Callable[[Path], None]:
    """Return what writes the CSV of ``frames`` (one header) to a path, a frame at a time
    (for ``replace_together``)."""
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            header = True
            for frame in frames:
                frame.write_csv(f, include_header=header)
                header = False

    return write
