"""The artifact store against a real S3-compatible server (moto's server mode) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpilot.artifacts import open_artifact_store
from mlpilot.artifacts.fsstore import FsspecArtifactStore
from mlpilot.errors import IntegrityError, NotFoundError

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> FsspecArtifactStore:
    store = open_artifact_store(
        f"s3://{s3_bucket}/mlpilot", client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True
    )
    assert isinstance(store, FsspecArtifactStore)
    return store


def test_s3_round_trip_bytes_and_files(s3_store: FsspecArtifactStore, tmp_path: Path) -> None:
    digest = s3_store.put_bytes(b"hello s3")
    assert s3_store.exists(digest)
    assert s3_store.get_bytes(digest) == b"hello s3"
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 40_000)
    d2 = s3_store.put_file(src)
    assert s3_store.get_file(d2, tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_s3_objects_are_content_addressed(s3_store: FsspecArtifactStore) -> None:
    digest = s3_store.put_bytes(b"abc")
    key = f"{s3_store.root}/sha256/{digest[:2]}/{digest[2:]}"
    assert s3_store.fs.cat_file(key) == b"abc"


def test_s3_tampered_object_is_refused(s3_store: FsspecArtifactStore, tmp_path: Path) -> None:
    digest = s3_store.put_bytes(b"genuine")
    s3_store.fs.pipe_file(f"{s3_store.root}/sha256/{digest[:2]}/{digest[2:]}", b"evil")
    with pytest.raises(IntegrityError):
        s3_store.get_bytes(digest)
    with pytest.raises(IntegrityError):
        s3_store.get_file(digest, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_s3_missing_object_is_not_found(s3_store: FsspecArtifactStore) -> None:
    with pytest.raises(NotFoundError):
        s3_store.get_bytes("a" * 64)


def test_client_reaches_s3_through_the_endpoint_setting(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MLPILOT_S3_ENDPOINT_URL`` reaches the artifact store the SDK opens (an S3-compatible server that is not
    AWS): a logged model's artifact lands in the bucket and loads back, hash-verified."""
    import numpy as np

    from mlpilot import Client
    from mlpilot.config import load_settings

    monkeypatch.setenv("MLPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("MLPILOT_ARTIFACT_URL", f"s3://{s3_bucket}/artifacts")
    monkeypatch.setenv("MLPILOT_S3_ENDPOINT_URL", s3_endpoint)
    client = Client(settings=load_settings())
    try:
        digest = client.artifacts.put_bytes(np.arange(4).tobytes())
        assert client.artifacts.get_bytes(digest) == np.arange(4).tobytes()
        import boto3

        keys = [
            o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)["Contents"]
        ]
        assert keys == [f"artifacts/sha256/{digest[:2]}/{digest[2:]}"]
    finally:
        client.close()
