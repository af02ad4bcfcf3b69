"""Content-addressed artifacts over fsspec: a local folder by default, ``s3://bucket/prefix`` via s3fs."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import fsspec

from mlpilot.artifacts.base import CHUNK, check_digest, sha256_file
from mlpilot.errors import ArtifactError, IntegrityError, MissingDependencyError, NotFoundError

__all__ = ["FsspecArtifactStore"]


class FsspecArtifactStore:
    """Blobs at ``<root>/sha256/<2 hex>/<62 hex>``.

    Local writes go to a temporary file in the same folder and are renamed into place (atomic on POSIX); object
    stores publish an object only once its upload completes, so a reader never sees half a blob either way.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        protocol, root = fsspec.core.split_protocol(self.url)
        self.protocol = protocol or "file"
        if self.protocol == "s3":
            try:
                import s3fs  # noqa: F401
            except ImportError as exc:
                raise MissingDependencyError("s3fs", "s3") from exc
        try:
            self.fs: fsspec.AbstractFileSystem = fsspec.filesystem(self.protocol, **storage_options)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(f"cannot open artifact store {self.url!r}: {exc}") from exc
        self.root = root if self.protocol != "file" else str(Path(root).resolve())
        self.local = self.protocol == "file"
        if self.local:
            Path(self.root, "sha256").mkdir(parents=True, exist_ok=True)
            Path(self.root, "tmp").mkdir(parents=True, exist_ok=True)

    def _key(self, digest: str) -> str:
        check_digest(digest)
        return f"{self.root}/sha256/{digest[:2]}/{digest[2:]}"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._key(digest)))

    def put_file(self, path: str | Path) -> str:
        digest = sha256_file(path)
        key = self._key(digest)
        if self.exists(digest):
            return digest
        try:
            if self.local:
                tmp = Path(self.root, "tmp", uuid.uuid4().hex)
                shutil.copyfile(path, tmp)
                self._publish_local(tmp, key)
            else:
                self.fs.put_file(str(path), key)
        except OSError as exc:
            raise ArtifactError(f"cannot store {path}: {exc}") from exc
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        if self.exists(digest):
            return digest
        try:
            if self.local:
                fd, name = tempfile.mkstemp(dir=Path(self.root, "tmp"))
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                self._publish_local(Path(name), key)
            else:
                self.fs.pipe_file(key, data)
        except OSError as exc:
            raise ArtifactError(f"cannot store blob {digest}: {exc}") from exc
        return digest

    def _publish_local(self, tmp: Path, key: str) -> None:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, key)

    def get_bytes(self, digest: str) -> bytes:
        key = self._key(digest)
        try:
            data: bytes = self.fs.cat_file(key)
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact {digest} is not in {self.url}", field="sha256") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"artifact {digest} in {self.url} is corrupt: its bytes do not match the hash")
        return data

    def get_file(self, digest: str, dest: str | Path) -> Path:
        """Copy the blob to ``dest``, hashing while copying; ``dest`` appears only if the hash matches."""
        key = self._key(digest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self.fs.open(key, "rb") as src:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise IntegrityError(f"artifact {digest} in {self.url} is corrupt: its bytes do not match the hash")
            os.replace(tmp_name, dest)
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact {digest} is not in {self.url}", field="sha256") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return dest

    def close(self) -> None:
        # fsspec caches filesystem instances; nothing of ours to release.
        return None
