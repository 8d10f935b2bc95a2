"""Bounded reads of the files a configuration names: only regular files, only up to a size cap.

A FIFO would block `open()` until a writer comes (and hang `check-config` for ever), and `/dev/zero`
would be read until memory runs out. Files are therefore opened non-blocking, checked with `fstat`
to be regular files, and read up to a cap.
"""

from __future__ import annotations

import os
import stat

__all__ = ["CONFIG_FILE_LIMIT", "SECRET_FILE_LIMIT", "FileError", "check_regular_file", "read_secret_file",
           "read_text_file"]

SECRET_FILE_LIMIT = 64 * 1024
"""Largest secret file read (a PAT, a bearer token, a password, a webhook URL): 64 KiB."""
CONFIG_FILE_LIMIT = 1024 * 1024
"""Largest configuration, web configuration or certificate file read: 1 MiB."""

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class FileError(ValueError):
    """A file that cannot be used; `str()` names the file, `reason` says why without naming it."""

    def __init__(self, path: str, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot read '{path}': {reason}")


def _size_text(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"


def _open_regular(path: str, limit: int) -> int:
    """A descriptor open for reading on a regular file of at most `limit` bytes (ValueError otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileError(path, exc.strerror or type(exc).__name__) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
            raise FileError(path, f"it is {kind}, not a regular file")
        if info.st_size > limit:
            raise FileError(path, f"it is larger than {_size_text(limit)} ({info.st_size} bytes)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular_file(path: str, limit: int = CONFIG_FILE_LIMIT) -> None:
    """Raise ValueError unless `path` is a readable regular file of at most `limit` bytes."""
    os.close(_open_regular(path, limit))


def read_text_file(path: str, limit: int = CONFIG_FILE_LIMIT) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes (ValueError with a user message)."""
    try:
        with os.fdopen(_open_regular(path, limit), "rb") as handle:  # the file object owns the descriptor
            data = handle.read(limit + 1)  # the file may have grown since fstat
    except OSError as exc:
        raise FileError(path, exc.strerror or type(exc).__name__) from None
    if len(data) > limit:
        raise FileError(path, f"it is larger than {_size_text(limit)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileError(path, "it is not UTF-8 text") from None


def read_secret_file(path: str, limit: int = SECRET_FILE_LIMIT) -> str:
    """The stripped content of a secret file (ValueError when missing, not regular, too large or empty)."""
    try:
        content = read_text_file(path, limit).strip()
    except FileError as exc:
        if exc.reason == "it is not UTF-8 text":
            raise ValueError(f"'{path}' is not UTF-8 text") from None
        raise
    if not content:
        raise ValueError(f"'{path}' is empty")
    return content
