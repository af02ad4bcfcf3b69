"""Artifacts through a remote server: uploads are re-hashed by the server, downloads re-hashed here."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from mlpilot.artifacts.base import check_digest, sha256_file
from mlpilot.errors import IntegrityError, NotFoundError
from mlpilot.remote.http import HttpTransport

__all__ = ["RestArtifactStore"]


class RestArtifactStore:
    """The :class:`~mlpilot.artifacts.ArtifactStore` contract over ``/api/v1/artifacts``."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport
        self.url = f"{transport.base_url}/api/v1/artifacts"

    def exists(self, digest: str) -> bool:
        check_digest(digest)
        try:
            self.transport.request("HEAD", f"/api/v1/artifacts/{digest}")
        except NotFoundError:
            return False
        return True

    def put_file(self, path: str | Path) -> str:
        digest = sha256_file(path)
        if not self.exists(digest):
            self.transport.put_file(f"/api/v1/artifacts/{digest}", path)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            self.transport.put_bytes(f"/api/v1/artifacts/{digest}", data)
        return digest

    def get_file(self, digest: str, dest: str | Path) -> Path:
        check_digest(digest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
        os.close(fd)
        try:
            self.transport.download(f"/api/v1/artifacts/{digest}", tmp)
            if sha256_file(tmp) != digest:
                raise IntegrityError(f"artifact {digest} arrived corrupt from {self.transport.base_url}")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest

    def get_bytes(self, digest: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            return self.get_file(digest, Path(tmp) / "blob").read_bytes()

    def close(self) -> None:
        self.transport.close()
