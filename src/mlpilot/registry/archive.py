"""One artifact per model version: a deterministic ``tar.gz`` of the flavor's folder.

Packing sorts members and zeroes times, owners and modes, so the same files always give the same bytes (and so
the same SHA-256). Unpacking checks every member before writing anything: only regular files and folders, no
absolute paths, no ``..``, nothing resolving outside the destination.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

from mlpilot.artifacts.paths import safe_name
from mlpilot.errors import ArtifactError, InvalidInputError, UnsafePathError

__all__ = ["pack_dir", "unpack"]

_COMPRESSLEVEL = 3  # model weights barely compress; text formats (JSON trees) do well even at low levels


def _members(folder: Path) -> list[Path]:
    paths = sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix())
    for path in paths:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise InvalidInputError(f"{path}: only regular files and folders can be packed", field="path")
    return paths


def pack_dir(folder: str | Path, dest: str | Path) -> Path:
    """Write ``folder``'s contents to ``dest`` as a deterministic ``tar.gz``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "model.json").write_text("{}")
    2
    >>> pack_dir(d, d.with_suffix(".tar.gz")).name.endswith(".tar.gz")
    True
    """
    folder, dest = Path(folder), Path(dest)
    # mtime=0 and no file name in the gzip header: the bytes depend on the contents only.
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_COMPRESSLEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in _members(folder):
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, path.stat().st_size
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
    return dest


def _check_member(member: tarfile.TarInfo, root: Path) -> Path:
    name = safe_name(member.name)  # refuses absolute paths, '..' segments and NUL bytes
    if not (member.isreg() or member.isdir()):
        raise UnsafePathError(
            f"model archive member {member.name!r} is a link or a device: only files and folders are allowed",
            field="name",
        )
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise UnsafePathError(f"model archive member {member.name!r} resolves outside the folder", field="name")
    return target


def unpack(archive: str | Path, dest: str | Path) -> Path:
    """Extract a model archive into the empty folder ``dest`` after checking every member."""
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            targets = [_check_member(m, root) for m in members]  # all checked before any byte is written
            for member, target in zip(members, targets, strict=True):
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ArtifactError(f"model archive member {member.name!r} has no data")
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, length=1 << 20)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise ArtifactError(f"cannot read model archive {archive}: {exc}") from exc
    return root
