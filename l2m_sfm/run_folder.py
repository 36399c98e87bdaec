"""The output folder of a reconstruct run: one writer at a time, writable before any work, gone after a failure
that computed nothing.

The lock is an fcntl lock on OUT/.lock (holding the owner's pid): the kernel drops it when the owner dies,
even by kill -9, so a crashed run never leaves a stale lock behind. The file itself stays (unlinking it would
let a third run lock a fresh file while a second still holds the old one).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from l2m.config import ConfigError

LOCK_NAME = ".lock"
# files whose presence means work was done in OUT (keep the folder, and compare configs before reusing it)
RESULT_FILES = ("features.h5", "matches.h5", "database.db", "sfm", "report.json")


class OutputBusyError(ConfigError):
    """Another process is writing the same output folder."""


def has_results(output: Path) -> bool:
    """True when `output` holds anything a run computed (not just config.json / pairs.txt / the lock)."""
    return any((Path(output) / name).exists() for name in RESULT_FILES)


@contextlib.contextmanager
def claimed(output: Path) -> Iterator[Path]:
    """Create `output` if needed, hold its lock for the block, and remove it again when the block fails having
    created the folder and computed nothing (so the corrected command needs no --overwrite).

    Raises ConfigError when the folder cannot be written and OutputBusyError when another run holds it.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file, not a folder; choose a folder")
    created = not output.exists()
    try:
        output.mkdir(parents=True, exist_ok=True)
        fd = os.open(output / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot write to the output folder {output} ({e.strerror}); choose a writable "
                          "--output") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputBusyError(f"{output} is in use by another reconstruct (pid {owner}); wait for it to finish "
                                  "or choose another --output") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise ConfigError(f"cannot write to the output folder {output} ({e.strerror}); choose a writable "
                              "--output") from e
        try:
            yield output
        except BaseException:
            if created and not has_results(output):
                shutil.rmtree(output, ignore_errors=True)
            raise
    finally:
        os.close(fd)  # releases the lock
