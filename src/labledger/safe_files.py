"""Files that hold evidence: read as untrusted input, written for their owner's eyes only.

An offline verifier is handed a folder by whoever wants it believed, so it opens only the
fixed names it expects, never follows a symbolic link, refuses anything but a regular file
(a FIFO or `/dev/zero` would hang it), and bounds every line and the inflation of a gzip
stream (a small bomb would otherwise take all memory). What it cannot read is one line,
exit 2 (`FileRefused`), never a traceback. Exports, archives and keys hold personal data
or secrets: they are created 0600 inside folders created 0700, and never through a link.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from labledger.core.errors import FileRefused

# A line holds one entry; an archived delivery carries its raw body (25 MiB by default).
MAX_LINE_BYTES = 64 << 20
# Labledger's JSON lines deflate far less than this; zeros deflate about a thousandfold.
MAX_INFLATION = 200
INFLATION_ALLOWANCE = 1 << 20
MAX_SMALL_FILE_BYTES = 16 << 20
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def open_regular(path: Path) -> IO[bytes]:
    """`path` opened for reading, if it is a regular file and not a symbolic link."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused(f"{path} is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(f"{path} is a symbolic link; copy the file itself") from None
        raise FileRefused(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileRefused(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def read_small(path: Path, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"{path} is larger than {limit} bytes")
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_small(path).decode("utf-8"))
    except ValueError as exc:
        raise FileRefused(f"{path} is not JSON: {str(exc).splitlines()[0]}") from None


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a JSON-lines file, gzip'd if named `.gz`."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise FileRefused(f"{path} line {number} is not JSON") from None
        if not isinstance(value, dict):
            raise FileRefused(f"{path} line {number} is not a JSON object")
        yield number, value


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open_regular(path) as raw:
        stream: IO[bytes] = raw
        if path.suffix == ".gz":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        inflated, number = 0, 0
        while line := _read_line(stream, path):
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise FileRefused(f"{path} line {number} is longer than {MAX_LINE_BYTES} bytes")
            inflated += len(line)
            if stream is not raw and inflated > MAX_INFLATION * raw.tell() + INFLATION_ALLOWANCE:
                raise FileRefused(
                    f"{path} inflates more than {MAX_INFLATION} times its compressed size; "
                    "no labledger archive does (a gzip bomb?)"
                )
            yield number, line


def _read_line(stream: IO[bytes], path: Path) -> bytes:
    try:
        return stream.readline(MAX_LINE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRefused(f"{path} is not a valid gzip file ({exc})") from None


@contextmanager
def reading_line(path: Path, number: int) -> Iterator[None]:
    """A line whose fields are missing or of the wrong type is refused, naming the line."""
    try:
        yield
    except KeyError as exc:
        raise FileRefused(f"{path} line {number} has no field {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:  # binascii.Error is a ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileRefused(f"{path} line {number} is not a labledger entry: {reason}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member(directory: Path, name: str, expected: tuple[str, ...]) -> Path:
    """The file `name` of a folder, only if it is one of the fixed names the folder holds."""
    if name not in expected:
        raise FileRefused(
            f"{directory}/manifest.json lists {name!r}; only {', '.join(expected)} belong there"
        )
    return directory / name


def check_new_folder(directory: Path) -> None:
    """Refuse a target folder that is a link or already holds something."""
    if directory.is_symlink():
        raise FileRefused(f"{directory} is a symbolic link; name a real, empty folder")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileRefused(f"{directory} is not an empty folder; name a new one")


def make_private_folder(directory: Path) -> None:
    """Create `directory` 0700 (and its missing parents), or accept an existing empty one."""
    check_new_folder(directory)
    make_private_parents(directory / "x")
    if not directory.exists():
        directory.mkdir(mode=PRIVATE_FOLDER)


@contextmanager
def filling_new_folder(directory: Path) -> Iterator[None]:
    """A new or empty private folder to fill: when filling it fails, what was written is
    removed again (and the folder, if made here), so a failure leaves nothing half-written."""
    check_new_folder(directory)
    made = not directory.exists()
    make_private_folder(directory)
    try:
        yield
    except BaseException:
        for path in directory.iterdir():  # all ours: the folder was empty
            with suppress(OSError):
                path.unlink()
        if made:
            with suppress(OSError):
                directory.rmdir()
        raise


def make_private_parents(path: Path) -> None:
    """Create the missing folders above `path`, each 0700 (Path.mkdir gives parents 0777)."""
    missing = [p for p in path.parents if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)


def create_private(path: Path, mode: str = "w") -> IO[Any]:
    """A new file readable by its owner only; fails if anything, even a link, is there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE)
    except FileExistsError:
        raise FileRefused(f"{path} already exists; nothing was written over it") from None
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8")
