"""The artifact store contract: immutable blobs addressed by the SHA-256 of their bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["CHUNK", "ArtifactStore", "check_digest", "sha256_file"]

CHUNK = 1 << 20


@runtime_checkable
class ArtifactStore(Protocol):
    """Content-addressed blob storage.

    - ``put_file``/``put_bytes`` store the bytes and return their SHA-256 (hex). Writes are atomic: a blob is either
      absent or complete; storing the same bytes twice is a no-op.
    - ``get_bytes``/``get_file`` return the bytes of a digest after verifying that they hash to it, raising
      :class:`~mlpilot.errors.IntegrityError` otherwise and :class:`~mlpilot.errors.NotFoundError` when absent.
    - ``exists`` says whether a digest is stored. ``close`` releases clients.
    """

    url: str

    def put_file(self, path: str | Path) -> str: ...

    def put_bytes(self, data: bytes) -> str: ...

    def get_bytes(self, digest: str) -> bytes: ...

    def get_file(self, digest: str, dest: str | Path) -> Path: ...

    def exists(self, digest: str) -> bool: ...

    def close(self) -> None: ...


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_digest(digest: str) -> str:
    """Refuse anything but 64 lowercase hex characters: digests become object keys."""
    from mlpilot.errors import InvalidInputError

    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInputError(f"expected a SHA-256 hex digest, got {str(digest)[:80]!r}", field="sha256")
    return digest
