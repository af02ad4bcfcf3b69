from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlpilot.artifacts import FsspecArtifactStore, open_artifact_store, safe_name
from mlpilot.errors import ConfigError, IntegrityError, InvalidInputError, NotFoundError, UnsafePathError


def test_put_and_get_bytes_round_trip_by_digest(artifacts: FsspecArtifactStore) -> None:
    digest = artifacts.put_bytes(b"weights")
    assert digest == hashlib.sha256(b"weights").hexdigest()
    assert artifacts.exists(digest)
    assert artifacts.get_bytes(digest) == b"weights"


def test_put_file_and_get_file(artifacts: FsspecArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"x" * 3_000_000)
    digest = artifacts.put_file(src)
    out = artifacts.get_file(digest, tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == src.read_bytes()


def test_storing_the_same_bytes_twice_is_one_blob(artifacts: FsspecArtifactStore) -> None:
    assert artifacts.put_bytes(b"a") == artifacts.put_bytes(b"a")
    blobs = list(Path(artifacts.root, "sha256").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == 1


def test_corrupted_blob_is_never_returned(artifacts: FsspecArtifactStore, tmp_path: Path) -> None:
    digest = artifacts.put_bytes(b"original")
    Path(artifacts._key(digest)).write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        artifacts.get_bytes(digest)
    dest = tmp_path / "dest.bin"
    with pytest.raises(IntegrityError):
        artifacts.get_file(digest, dest)
    assert not dest.exists()
    assert not list(tmp_path.glob(".partial-*"))


def test_missing_blob_is_not_found(artifacts: FsspecArtifactStore) -> None:
    with pytest.raises(NotFoundError):
        artifacts.get_bytes("0" * 64)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ab", "Z" * 64, "0" * 63 + "/"])
def test_digest_must_be_sha256_hex(artifacts: FsspecArtifactStore, digest: str) -> None:
    with pytest.raises(InvalidInputError):
        artifacts.get_bytes(digest)


def test_no_temporary_files_left_after_writes(artifacts: FsspecArtifactStore) -> None:
    for i in range(5):
        artifacts.put_bytes(str(i).encode())
    assert list(Path(artifacts.root, "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../b", "/etc/passwd", "C:\\win", "\\\\host\\share", "a\x00b", "", "  ", "./.", ".."],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_name(name)


@pytest.mark.parametrize(("name", "expected"), [("a/b.png", "a/b.png"), ("a//b/./c", "a/b/c"), ("x\\y", "x/y")])
def test_safe_names_are_normalised(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_unknown_scheme_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="MLPILOT_ARTIFACT_URL"):
        open_artifact_store("ftp://host/x")
