"""Loading is safe: hashes are verified before anything is parsed, archives cannot write outside their folder,
and formats that could run code get only what was recorded when the model was saved.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.errors import ArtifactError, IntegrityError, PermissionDeniedError, UnsafePathError
from mlpilot.registry import ModelVersionInfo, NewModelVersion, RegistryService, load_model, log_model
from mlpilot.registry.archive import pack_dir, unpack
from mlpilot.registry.predictor import META_FILE


@pytest.fixture
def registry(sqlite_registry: RegistryService) -> RegistryService:
    """Model formats do not depend on the metadata backend: SQLite only keeps this module fast."""
    return sqlite_registry


class Tripwire:
    """Writes a marker file whenever it is unpickled: proof of whether a model was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("loaded")
        self.__dict__.update(state)

    def predict(self, x: Any) -> Any:
        return np.asarray(x)


def _blob_path(artifacts: FsspecArtifactStore, digest: str) -> Path:
    return Path(artifacts.root, "sha256", digest[:2], digest[2:])


def test_corrupt_artifact_is_refused_and_nothing_is_loaded(
    registry: RegistryService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    marker = tmp_path / "loaded.txt"
    version = log_model(Tripwire(str(marker)), "trip", registry=registry, artifacts=artifacts, input_example=[[1.0]])
    load_model("trip/1", registry, artifacts)
    assert marker.exists()  # the tripwire works
    marker.unlink()

    blob = _blob_path(artifacts, version.artifact_sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        load_model("trip/1", registry, artifacts)
    assert not marker.exists()


def test_pickled_models_can_be_refused_outright(
    registry: RegistryService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    marker = tmp_path / "loaded.txt"
    log_model(Tripwire(str(marker)), "trip", registry=registry, artifacts=artifacts, input_example=[[1.0]])
    with pytest.raises(PermissionDeniedError) as err:
        load_model("models:/trip/latest", registry, artifacts, allow_pickle=False)
    assert err.value.field == "allow_pickle"
    assert not marker.exists()


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"x"


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize(
    "bad",
    [
        _file("../escape.txt"),
        _file("model/../../escape.txt"),
        _file("/tmp/absolute.txt"),
        _file("C:/windows.txt"),
        _link("model/link", "/etc/passwd", tarfile.SYMTYPE),
        _link("model/hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink", "hardlink"],
)
def test_archive_members_escaping_the_folder_are_refused(bad: Any, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    # a harmless member first: nothing at all may be written when any member is bad
    archive.write_bytes(_tar([_file("model/ok.txt"), bad]))
    dest = tmp_path / "box" / "dest"
    with pytest.raises(UnsafePathError):
        unpack(archive, dest)
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["dest"]


def test_registered_archive_with_traversal_is_refused_on_load(
    registry: RegistryService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar([_file(META_FILE), _file("../../escape.txt")]))
    digest = artifacts.put_file(archive)
    new = NewModelVersion(flavor="pyfunc", artifact_sha256=digest, artifact_size=archive.stat().st_size)
    registry.create_model_version("evil", new)
    with pytest.raises(UnsafePathError):
        load_model("evil/1", registry, artifacts)


def test_packing_is_deterministic(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(os.urandom(1000))
    (folder / "meta.json").write_text("{}")
    first = pack_dir(folder, tmp_path / "a.tar.gz").read_bytes()
    os.utime(folder / "meta.json", (0, 1_000_000))  # times, owners and modes do not reach the archive
    os.chmod(folder / "meta.json", 0o600)
    second = pack_dir(folder, tmp_path / "b.tar.gz").read_bytes()
    assert first == second
    out = unpack(tmp_path / "b.tar.gz", tmp_path / "out")
    assert (out / "model" / "weights.bin").read_bytes() == (folder / "model" / "weights.bin").read_bytes()


def _rebuild(
    version: ModelVersionInfo,
    registry: RegistryService,
    artifacts: FsspecArtifactStore,
    tmp: Path,
    edit: Callable[[Path], None],
) -> str:
    """Register a tampered copy of ``version``: unpacked, edited, repacked (so its hash matches)."""
    archive = artifacts.get_file(version.artifact_sha256, tmp / "orig.tar.gz")
    folder = unpack(archive, tmp / "orig")
    edit(folder)
    packed = pack_dir(folder, tmp / "tampered.tar.gz")
    new = NewModelVersion(
        flavor=version.flavor,
        artifact_sha256=artifacts.put_file(packed),
        artifact_size=packed.stat().st_size,
        signature=version.signature,
    )
    return registry.create_model_version("tampered", new).uri


def double_it(x: Any) -> Any:
    return np.asarray(x) * 2


def test_skops_loads_only_the_types_recorded_at_save(
    registry: RegistryService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    pytest.importorskip("skops")
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.arange(20.0).reshape(10, 2)
    pipeline = make_pipeline(FunctionTransformer(double_it), LinearRegression()).fit(x, x.sum(axis=1))
    version = log_model(pipeline, "custom", registry=registry, artifacts=artifacts, input_example=x[:3])
    assert np.allclose(load_model(version.uri, registry, artifacts).predict(x), pipeline.predict(x))

    def forget_trust(folder: Path) -> None:
        meta = json.loads((folder / META_FILE).read_text())
        assert f"{__name__}.double_it" in meta["flavor_meta"]["trusted_types"]
        meta["flavor_meta"]["trusted_types"] = []
        (folder / META_FILE).write_text(json.dumps(meta))

    uri = _rebuild(version, registry, artifacts, tmp_path, forget_trust)
    with pytest.raises(ArtifactError, match="double_it"):
        load_model(uri, registry, artifacts)


def test_torch_weights_holding_objects_are_refused(
    registry: RegistryService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "loaded.txt"
    net = torch.nn.Linear(2, 1)
    version = log_model(net, "net", registry=registry, artifacts=artifacts, input_example=np.ones((2, 2), "float32"))

    def smuggle_object(folder: Path) -> None:
        torch.save(
            {"weight": torch.zeros(1, 2), "payload": Tripwire(str(marker))},
            folder / "model" / "state_dict.pt",
        )

    uri = _rebuild(version, registry, artifacts, tmp_path, smuggle_object)
    with pytest.raises(ArtifactError, match=r"state_dict\.pt"):
        load_model(uri, registry, artifacts)
    assert not marker.exists()


def test_archive_flavor_must_match_the_registry(
    registry: RegistryService, artifacts: FsspecArtifactStore, tmp_path: Path
) -> None:
    version = log_model(double_it, "f", registry=registry, artifacts=artifacts, input_example=[[1.0]])
    archive = artifacts.get_file(version.artifact_sha256, tmp_path / "a.tar.gz")
    registry.create_model_version(
        "liar",
        NewModelVersion(flavor="onnx", artifact_sha256=version.artifact_sha256, artifact_size=archive.stat().st_size),
    )
    with pytest.raises(IntegrityError, match="pyfunc"):
        load_model("liar/1", registry, artifacts)
