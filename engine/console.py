"""The ``order-kpis`` console script, and how a signal stops a command.

Imported before anything else (it imports no more than ``signal``, ``sys`` and
``contextlib``), so that its handlers are set ~0.03 s sooner than the command line's modules
could set them: a signal in the interpreter's first ~0.02 s still acts as its default does
(nothing has been done then).
"""

from __future__ import annotations

import contextlib
import signal
import sys


class Stopped(KeyboardInterrupt):
    """A SIGTERM (``kill``, ``timeout``, a supervisor or container stopping the command) or a
    SIGHUP (its terminal closed), raised in the main thread as Ctrl-C raises
    ``KeyboardInterrupt``, so that the command unwinds as it does for Ctrl-C: staged rows,
    spools and temporary files removed, every output whole and as it was (the signal's
    default action killed the process where it stood and left them)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOPS = (signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, frame: object) -> None:
    # One is enough: a second (a supervisor repeating itself), or one after a Ctrl-C, would
    # cut the clean-up short.
    for s in _STOPS:
        signal.signal(s, signal.SIG_IGN)
    if not isinstance(sys.exc_info()[1], KeyboardInterrupt):
        raise Stopped(signum)


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C, raised once. Polars sees it too (its own handler runs before this one): the
    query it was running raises ``KeyboardInterrupt``, and Python's handler then raised a
    second one in the middle of the first one's clean-up (pola-rs/polars#23988), which left
    temporary files of the outputs being written. While one is being handled, another
    changes nothing."""
    if isinstance(sys.exc_info()[1], KeyboardInterrupt):
        return
    raise KeyboardInterrupt


def say(text: str) -> None:
    """Print ``text`` on standard error as a stopped command's last word; a terminal that
    has hung up (SIGHUP: every write fails) takes nothing, and the exit code stands."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr)


def why(e: KeyboardInterrupt) -> tuple[str, int]:
    """Return what stopped the command, said as the messages say it, and its exit code:
    ``interrupted`` and 130 for Ctrl-C; ``stopped by SIGTERM`` and 143 (128 + the signal's
    number, as a shell reports a process the signal killed) for a ``Stopped``."""
    if isinstance(e, Stopped):
        return f"stopped by {signal.Signals(e.signum).name}", 128 + e.signum
    return "interrupted", 130


def entry() -> None:
    """The ``order-kpis`` console script: ``engine.cli.main``, then exit with its code.

    A Ctrl-C while the command line is being read (the first ~0.2 s) printed a traceback;
    one that came after the command had finished, while the interpreter was ending, turned
    its code into 130 although every output had been written. Now the first is "interrupted"
    and 130, and once ``main`` has returned, SIGINT is ignored: the code is the command's.
    SIGTERM and SIGHUP, which killed the command where it stood (a staged source, a spool,
    temporary files left behind; exit 143 and no word), stop it as Ctrl-C does (``Stopped``),
    with 128 + the signal's number. A signal a command was started to ignore (`nohup`, a
    shell script's background job) stays ignored.
    """
    with contextlib.suppress(ValueError):  # only the main thread may set them
        for s in _STOPS:
            if signal.getsignal(s) is signal.SIG_DFL:
                signal.signal(s, _stop)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt)
    try:
        from engine.cli import main

        code = main()
    except KeyboardInterrupt as e:  # before the command began its work: nothing was done
        said, code = why(e)
        say(f"order-kpis: {said}; nothing was changed")
    finally:  # whatever ended it (a traceback under --debug too)
        _ended()
    sys.exit(code)


def _ended() -> None:
    """From here on a signal changes nothing: the code is the command's. Then its temporary
    files still there go (an interrupted write's, whatever step it stopped at)."""
    ends = (signal.SIGINT, *_STOPS)
    with contextlib.suppress(ValueError):
        signal.pthread_sigmask(signal.SIG_BLOCK, ends)  # none lands between the next lines
        try:
            for s in ends:
                signal.signal(s, signal.SIG_IGN)
        except KeyboardInterrupt:  # one that came as the command ended: the code stands
            for s in ends:
                signal.signal(s, signal.SIG_IGN)
    if (atomic := sys.modules.get("engine.atomic")) is not None:  # it wrote files
        atomic.sweep_own()


if __name__ == "__main__":  # pragma: no cover
    entry()
