"""The service's own files beside a database: opened owner-only, never through a link."""

import errno
import os
import stat
from pathlib import Path

# Never opened through a symbolic link: one planted in its place would have the service
# create, size and write whatever file it points to.
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
# What an operator does about a file refused: the service makes a new one, which processes
# still mapping the old one would not see.
_REMOVE_IT = "remove it while no scoresvc uses the database"


class FileRefused(ValueError):
    """A file of the service's it will not open: a symbolic link, or another user's file."""


def open_owner_only(path: str | Path, *, what: str) -> int:
    """path (the service's `what` file) opened to read and write, made if missing, mode 0600
    whatever the umask; FileRefused for a symbolic link or another user's file."""
    try:
        descriptor = os.open(path, _FILE_FLAGS, 0o600)
    except OSError as error:
        # O_NOFOLLOW answers ELOOP for a link, as it does for a loop of links among directories.
        if error.errno == errno.ELOOP and os.path.islink(path):
            raise FileRefused(f"the {what} file {path} is a symbolic link: {_REMOVE_IT}") from error
        raise
    try:
        # The service's own file, with no reason to be any other mode: one made under an odd
        # umask, or opened up since, is put back to 0600.
        if stat.S_IMODE(os.fstat(descriptor).st_mode) != 0o600:
            os.fchmod(descriptor, 0o600)
    except PermissionError as error:
        os.close(descriptor)
        message = f"the {what} file {path} belongs to another user: {_REMOVE_IT}"
        raise FileRefused(message) from error
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def allocate(descriptor: int, offset: int, length: int, path: str) -> None:
    """Give the file's bytes from offset their blocks on disk now, before a map writes them.

    A page of a hole written through a map on a full disk kills the process (SIGBUS); an
    OSError here, naming the file, is something to handle.
    """
    try:
        os.posix_fallocate(descriptor, offset, length)
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from error
