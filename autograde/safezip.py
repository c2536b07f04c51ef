"""Unpack a learning-management-system export without trusting a single name in it.

* Every entry name is rebuilt from its components: ``..``, ``.``, empty parts, drive letters and
  leading slashes are dropped, backslashes count as separators (Windows zips), so no entry can land
  outside the destination folder (the "zip slip" path traversal).
* Symbolic links, devices and other special entries are never created: everything becomes a plain
  file written by us, with ``open(..., "xb")`` so that nothing is overwritten or followed.
* Names that were not stored as UTF-8 (old Windows and macOS tools use the OEM code page) are
  recovered when they decode as UTF-8, and are NFC-normalised, so "é" from a Mac zip and "é" from
  a Windows zip are the same student.
* Components longer than the file system allows are shortened (keeping a hash, so two long names
  stay distinct); two entries that end up with the same name keep both (``name (2).ipynb``).
* Each file keeps its entry's time (zip times have no zone: local time), which tells a student's latest upload.
* Sizes are counted while copying, not taken from the zip's headers: a zip bomb stops at the
  per-file and total limits, and the entries it could not unpack are reported, not fatal.
"""
from __future__ import annotations

import hashlib
import os
import stat
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

MAX_COMPONENT_BYTES = 200  # leaves room for suffixes such as " (2)" and ".html" under NAME_MAX (255)
JUNK_PARTS = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints", "__pycache__"}


@dataclass
class Extraction:
    root: Path
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # entry name -> why it was not unpacked
    truncated: set[Path] = field(default_factory=set)  # files cut short by a size limit
    junk: list[str] = field(default_factory=list)  # operating-system junk left out (__MACOSX, .DS_Store, ...)


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as the student's operating system meant it."""
    name = info.filename
    if not info.flag_bits & 0x800:  # not flagged UTF-8: zipfile decoded it as cp437
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return unicodedata.normalize("NFC", name)


def _shorten(part: str) -> str:
    encoded = part.encode("utf-8", "surrogateescape")
    if len(encoded) <= MAX_COMPONENT_BYTES:
        return part
    stem, dot, suffix = part.rpartition(".")
    suffix = (dot + suffix) if dot and len(suffix) <= 16 else ""
    digest = hashlib.sha1(encoded).hexdigest()[:10]
    keep = MAX_COMPONENT_BYTES - len(suffix.encode()) - len(digest) - 1
    head = (stem if suffix else part).encode("utf-8", "surrogateescape")[:keep].decode("utf-8", "ignore")
    return f"{head}~{digest}{suffix}"


def safe_parts(name: str) -> list[str]:
    """Path components that are safe to create under a destination folder (possibly none)."""
    parts = []
    for part in name.replace("\\", "/").split("/"):
        part = part.replace("\x00", "")
        if part in ("", ".", ".."):
            continue
        if len(part) == 2 and part[1] == ":" and not parts:  # "C:" drive letter
            continue
        parts.append(_shorten(part))
    return parts


def is_junk(parts) -> bool:
    return any(part in JUNK_PARTS or part.startswith("._") for part in parts)


def _unique(path: Path, taken: set[Path]) -> Path:
    if path not in taken and not path.exists():
        return path
    stem, suffix = path.stem, path.suffix
    for n in range(2, 10_000):
        candidate = path.with_name(f"{stem} ({n}){suffix}")
        if candidate not in taken and not candidate.exists():
            return candidate
    raise OSError(f"too many files named {path.name}")


def extract(archive: str | os.PathLike, dest: str | os.PathLike, *, max_file_bytes: int = 512 << 20,
            max_total_bytes: int = 8 << 30, max_entries: int = 100_000) -> Extraction:
    """Unpack *archive* into *dest* (created), safely. Raises ``zipfile.BadZipFile`` if it is no zip."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    result = Extraction(root=root)
    total = 0
    taken: set[Path] = set()
    with zipfile.ZipFile(archive) as zf:
        for index, info in enumerate(zf.infolist()):
            name = entry_name(info)
            if index >= max_entries:
                result.skipped[name] = "too many entries in the zip"
                continue
            mode = info.external_attr >> 16
            if info.is_dir():
                continue
            if mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
                result.skipped[name] = "not a regular file (link or device)"
                continue
            parts = safe_parts(name)
            if not parts:
                result.skipped[name] = "no usable file name"
                continue
            if is_junk(parts):
                result.junk.append(name)
                continue
            target = root.joinpath(*parts)
            try:
                _make_dirs(root, target.parent)
            except OSError as exc:
                result.skipped[name] = f"cannot create its folder ({exc.strerror or exc})"
                continue
            # Belt and braces: the rebuilt path must still be inside the destination.
            if os.path.commonpath([root, target.parent.resolve()]) != str(root):
                result.skipped[name] = "outside the destination folder"
                continue
            target = _unique(target, taken)
            taken.add(target)
            budget = min(max_file_bytes, max_total_bytes - total)
            if budget <= 0:
                result.skipped[name] = "the zip unpacks to more than the size limit"
                continue
            try:
                written, cut = _copy_entry(zf, info, target, budget)
            except Exception as exc:  # noqa: BLE001 - zlib.error, struct.error...: a student's bytes may be anything
                # Encrypted, corrupt or unsupported entry: the file is kept (possibly empty) and flagged.
                result.skipped[name] = f"could not be unpacked ({type(exc).__name__}: {exc})"
                if not target.exists():
                    continue
                written, cut = target.stat().st_size, True
            total += written
            _keep_time(target, info)
            result.files.append(target)
            if cut:
                result.truncated.add(target)
    return result


def _keep_time(target: Path, info: zipfile.ZipInfo) -> None:
    try:
        when = time.mktime(info.date_time + (0, 0, -1))
        os.utime(target, (when, when))
    except (OverflowError, ValueError, OSError):
        pass  # an impossible date in a hand-made zip: the file keeps the time it was written


def _make_dirs(root: Path, directory: Path) -> None:
    """mkdir -p that refuses to go through anything but real directories it created itself."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise OSError(f"{current} is not a directory")
        if not current.exists():
            current.mkdir()


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> tuple[int, bool]:
    written = 0
    cut = False
    with zf.open(info) as src, open(target, "xb") as out:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            if written + len(chunk) > budget:
                out.write(chunk[:budget - written])
                written = budget
                cut = True
                break
            out.write(chunk)
            written += len(chunk)
    return written, cut
