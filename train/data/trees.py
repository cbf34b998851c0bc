"""One tree of the seed's layout (``fg_bg``, ``bg``, ...) stored as a folder or as a zip.

Both list every file once (``names()``) and read a file by its row in that list. A zip's central
directory is parsed once and cached on disk (keyed by path, size and mtime), and members are
read with ``os.pread`` at their stored offsets: no per-file ``stat``, no extraction, and safe to
share across forked loader workers (pread has no file position to race on).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then name and extra lengths at byte 26


def cache_dir() -> Path:
    """Where zip indexes are cached: $MASKDEPTH_CACHE, else ~/.cache/maskdepth."""
    base = os.environ.get("MASKDEPTH_CACHE") or Path.home() / ".cache" / "maskdepth"
    return Path(base) / "zip-index"


class FolderTree:
    """A folder of files; members are addressed by their row in :meth:`names`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self._names = self._list()

    def _list(self) -> list[str]:
        found: list[str] = []
        stack = [("", self.root)]
        while stack:  # one scandir per folder
            prefix, folder = stack.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=True):
                        stack.append((prefix + entry.name + "/", Path(entry.path)))
                    else:
                        found.append(prefix + entry.name)
        return found

    def names(self) -> list[str]:
        """Relative POSIX paths of every file, in listing order."""
        return self._names

    def read(self, row: int) -> bytes:
        try:
            return (self.root / self._names[row]).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.describe(row)}: no such file") from None

    def describe(self, row: int) -> str:
        return str(self.root / self._names[row])

    def path_of(self, name: str) -> str:
        """How a (possibly absent) member would be named in messages."""
        return str(self.root / name)


class ZipTree:
    """The members of a zip under an optional top folder (``fg_bg/`` in ``fg_bg.zip``)."""

    def __init__(self, path: Path, top: str) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        names, self._offset, self._size, self._method, self._crc = _zip_index(self.path)
        prefix = top + "/"
        if names and all(n.startswith(prefix) for n in names):
            names = [n[len(prefix) :] for n in names]
        self._names = names
        self._fd: int | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def names(self) -> list[str]:
        return self._names

    def describe(self, row: int) -> str:
        return self.path_of(self._names[row])

    def path_of(self, name: str) -> str:
        return f"{self.path}:{name}"

    def read(self, row: int) -> bytes:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        offset, size = int(self._offset[row]), int(self._size[row])
        header = os.pread(self._fd, _LOCAL_HEADER.size, offset)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise MaskDepthError(f"{self.describe(row)}: broken zip member header")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        raw = os.pread(self._fd, size, offset + _LOCAL_HEADER.size + name_len + extra_len)
        if len(raw) < size:
            raise MaskDepthError(f"{self.describe(row)}: truncated zip (member cut short)")
        data = raw if self._method[row] == zipfile.ZIP_STORED else _inflate(raw, row, self)
        if zlib.crc32(data) != int(self._crc[row]):
            raise MaskDepthError(f"{self.describe(row)}: CRC mismatch, the zip is corrupt")
        return data


def _inflate(raw: bytes, row: int, tree: ZipTree) -> bytes:
    try:
        return zlib.decompress(raw, -15)
    except zlib.error as exc:
        raise MaskDepthError(f"{tree.describe(row)}: corrupt deflate data ({exc})") from exc


def _zip_index(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(names, header offsets, compressed sizes, methods, CRCs) of a zip's files, cached on disk."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir() / f"{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as saved:
                text = saved["names"].tobytes().decode()
                names = text.split("\n") if text else []
                return names, saved["offset"], saved["size"], saved["method"], saved["crc"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    infos = _read_central_directory(path)
    names = [i.filename for i in infos]
    arrays = {
        "offset": np.array([i.header_offset for i in infos], np.int64),
        "size": np.array([i.compress_size for i in infos], np.int64),
        "method": np.array([i.compress_type for i in infos], np.int16),
        "crc": np.array([i.CRC for i in infos], np.int64),
    }
    _save_index(cached, names, arrays)
    return names, arrays["offset"], arrays["size"], arrays["method"], arrays["crc"]


def _read_central_directory(path: Path) -> list[zipfile.ZipInfo]:
    """The zip's file entries, checked to be readable by :meth:`ZipTree.read`."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise MaskDepthError(f"{path}: not a readable zip file ({exc})") from exc
    for info in infos:
        if info.flag_bits & 0x1:
            raise MaskDepthError(f"{path}: {info.filename} is encrypted; expected a plain zip")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise MaskDepthError(
                f"{path}: {info.filename} uses compression {info.compress_type}; "
                "expected stored or deflate (re-zip with plain 'zip')"
            )
    return infos


def _save_index(cached: Path, names: list[str], arrays: dict[str, np.ndarray]) -> None:
    blob = np.frombuffer("\n".join(names).encode(), np.uint8)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.part")
        with open(tmp, "wb") as handle:
            np.savez(handle, names=blob, **arrays)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home only costs the next run a re-parse


def open_tree(root: Path, tree: str) -> FolderTree | ZipTree | None:
    """The tree as ``root/tree/`` or ``root/tree.zip`` (folder first), or None if neither exists."""
    folder, archive = root / tree, root / f"{tree}.zip"
    if folder.is_dir():
        return FolderTree(folder)
    if archive.is_file():
        return ZipTree(archive, tree)
    return None
