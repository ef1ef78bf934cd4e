"""CIFAR-10 from a local copy: finding one, reading it into arrays, and its content identity.

Pure library code: no printing, no CLI. Every problem with the user's input is
raised as ``CifarError`` (exit 2). Input is untrusted: archives are read member by
member in memory against an allow-list (nothing is ever extracted to disk); decoding
the batch files is ``batches.py``'s, opening files safely ``source_files.py``'s, and
downloading ``download.py``'s.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from cifarcli.batches import FORMAT_OF_FOLDER, LAYOUTS, Cifar10, Layout, decode_batches
from cifarcli.errors import CifarError
from cifarcli.source_files import ARCHIVE_NAMES, CHUNK, MAX_MEMBER, MAX_SOURCE_BYTES, batches_folder, open_regular

# Official archives ship readme.html; repackaged copies (like the shared stand-in) readme.txt.
_IGNORED = frozenset({"readme.html", "readme.txt"})


# --------------------------------------------------------------------------- finding


def _default_search_dirs() -> list[Path]:
    # ./data is torchvision's usual root= (it keeps cifar-10-python.tar.gz and cifar-10-batches-py/ there);
    # Keras downloads and extracts under ~/.keras/datasets.
    return [Path("Datasets"), Path("datasets"), Path("data"), Path.home() / ".keras" / "datasets"]


def _is_complete(folder: Path, layout: Layout) -> bool:
    return all((folder / name).is_file() for name in layout.required)


def archive_in(folder: Path) -> Path | None:
    """The first CIFAR-10 archive, by its published (or Keras') name, in ``folder`` (a symlink to one is fine)."""
    return next((Path(folder) / name for name in ARCHIVE_NAMES if (Path(folder) / name).is_file()), None)


def holds_batches(folder: Path) -> bool:
    """True when ``folder`` is, or directly holds, a folder with any official batch file."""
    try:
        batches_folder(Path(folder))
    except CifarError:
        return False
    return True


def find_local_copy(search_dirs: list[Path] | None = None) -> Path | None:
    """In each search folder in turn: a ``cifar-10-batches-bin/`` or ``-py/`` folder holding every
    batch file, else an archive by its usual name; None when no folder has either."""
    for base in _default_search_dirs() if search_dirs is None else search_dirs:
        for layout in LAYOUTS.values():
            folder = Path(base) / layout.folder
            if _is_complete(folder, layout):
                return folder
        archive = archive_in(base)
        if archive is not None:
            return archive
    return None


# --------------------------------------------------------------------------- identity


def content_sha256(dataset: Cifar10) -> str:
    """The dataset's identity: sha256 of its decoded arrays and class names, whatever file they came from.

    Hashed in a fixed order (train pixels, train labels, test pixels, test labels, each
    C-ordered uint8, behind a header with their shapes; then the class names as JSON), so a
    binary archive, a python archive and either extracted folder of the same images agree.
    """
    digest = hashlib.sha256()
    arrays = [
        np.ascontiguousarray(a, dtype=np.uint8)
        for a in (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y)
    ]
    digest.update(f"cifar10-content-1 {[a.shape for a in arrays]}\0".encode())
    for array in arrays:
        digest.update(memoryview(array).cast("B"))
    digest.update(json.dumps(list(dataset.label_names), ensure_ascii=False).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading


def read_cifar10(path: Path, on_member: Callable[[str], None] | None = None) -> tuple[Cifar10, str]:
    """Read an official archive (``.tar.gz``, any name) or an extracted batches folder.

    The format is told from the content: gzip/tar magic bytes and the member
    names, never the file name. Returns (dataset, 'binary' | 'python').
    ``on_member`` is told the name of each official file as it is read.
    """
    path = Path(path)
    if path.is_dir():
        folder, fmt = batches_folder(path)
        files = _read_folder_files(folder, LAYOUTS[fmt], on_member)
        return decode_batches(fmt, files, lambda name: str(folder / name)), fmt
    fmt, files = _read_archive(path, on_member)
    folder = LAYOUTS[fmt].folder
    return decode_batches(fmt, files, lambda name: f"{path.name}:{folder}/{name}"), fmt


def _read_folder_files(folder: Path, layout: Layout, on_member=None) -> dict[str, bytes]:
    """Bytes of each official file present; missing ones are reported by ``decode_batches``."""
    files = {}
    for name in layout.required:
        file = folder / name
        if not os.path.lexists(file):
            continue
        if on_member is not None:
            on_member(name)
        try:
            with open_regular(file, MAX_MEMBER, "batch file") as f:
                files[name] = f.read()
        except OSError as exc:
            raise CifarError(f"cannot read {file}: {exc.strerror or exc}") from exc
    return files


def _is_gzip(path: Path) -> bool:
    """True for gzip, False for a plain tar, from the magic bytes; anything else is refused."""
    try:
        with open_regular(path, MAX_SOURCE_BYTES, "archive") as f:
            head = f.read(512)
    except OSError as exc:
        raise CifarError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not head:
        raise CifarError(f"{path} is empty", setting="source")
    if head.startswith(b"\x1f\x8b"):
        return True
    if head[257:262] == b"ustar":
        return False
    raise CifarError(
        f"{path} is not a CIFAR-10 archive (neither gzip nor tar)",
        hint="expected cifar-10-binary.tar.gz, cifar-10-python.tar.gz or an extracted folder",
    )


def _read_archive(path: Path, on_member=None) -> tuple[str, dict[str, bytes]]:
    """(format, official file name -> bytes), reading the tar stream once, in memory."""
    gzipped = _is_gzip(path)
    try:
        with open_regular(path, MAX_SOURCE_BYTES, "archive") as raw:
            # GzipFile rather than tarfile's own "r|gz": it checks the CRC and length
            # at the end of the stream, so damaged bytes cannot pass as a short archive.
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            with stream, tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
                fmt, files = _read_members(tar, path, on_member)
                if gzipped:
                    _drain(stream, path)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise CifarError(f"{path.name}: damaged or truncated archive ({exc})", setting="source") from exc
    if fmt is None:
        raise CifarError(
            f"{path.name}: archive holds no cifar-10-batches-bin/ or cifar-10-batches-py/ folder",
            hint="expected cifar-10-binary.tar.gz or cifar-10-python.tar.gz",
        )
    return fmt, files


def _read_members(tar: tarfile.TarFile, path: Path, on_member=None) -> tuple[str | None, dict[str, bytes]]:
    """Allow-list and read every member of a tar stream: (format or None, file name -> bytes)."""
    fmt = None
    files: dict[str, bytes] = {}
    for info in tar:
        fmt, name = _check_member(info, fmt)
        if name is None:
            continue
        if name in files:
            raise CifarError(f"{path.name}: archive member {info.name!r} appears twice")
        if on_member is not None:
            on_member(name)
        files[name] = tar.extractfile(info).read()
    return fmt, files


def _drain(stream, path: Path) -> None:
    """Read past the tar's end marker to the gzip trailer (which verifies the CRC).

    Only the tar's zero padding belongs there; a long tail is refused rather
    than decompressed, in case it is a bomb.
    """
    tail = 0
    while chunk := stream.read(CHUNK):
        tail += len(chunk)
        if tail > CHUNK:
            raise CifarError(f"{path.name}: unexpected data after the end of the archive")


def _check_member(info: tarfile.TarInfo, fmt: str | None) -> tuple[str, str | None]:
    """Allow-list one tar member: (format, official file name or None to skip it).

    Only regular files with official names under exactly one official top
    folder pass (and that folder itself); anything else is refused by name.
    """
    name = info.name
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise CifarError(f"archive member {name!r} points outside the archive folder; refusing it")
    for is_kind, kind in ((info.issym, "a symlink"), (info.islnk, "a hard link"), (info.isdev, "a device or fifo")):
        if is_kind():
            raise CifarError(f"archive member {name!r} is {kind}; refusing it")
    member_fmt = FORMAT_OF_FOLDER.get(parts[0]) if parts else None
    if member_fmt is None or len(parts) > 2 or (fmt is not None and member_fmt != fmt):
        raise CifarError(f"unexpected archive member {name!r} (not part of one CIFAR-10 folder)")
    if len(parts) == 1:
        if not info.isdir():
            raise CifarError(f"unexpected archive member {name!r} (not a folder)")
        return member_fmt, None
    file = parts[1]
    if not info.isreg() or (file not in LAYOUTS[member_fmt].required and file not in _IGNORED):
        raise CifarError(f"unexpected archive member {name!r} (not a CIFAR-10 file)")
    if info.size > MAX_MEMBER:
        raise CifarError(f"archive member {name!r} is {info.size} bytes, far larger than a CIFAR-10 batch")
    return member_fmt, (None if file in _IGNORED else file)
