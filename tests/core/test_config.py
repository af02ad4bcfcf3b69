from __future__ import annotations

from pathlib import Path

import pytest

from mlpilot.config import load_settings
from mlpilot.errors import ConfigError


def test_defaults_put_everything_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_HOME", str(tmp_path / "h"))
    s = load_settings()
    assert s.resolved_db_url == f"sqlite:///{(tmp_path / 'h').resolve() / 'mlpilot.db'}"
    assert s.resolved_artifact_url == str((tmp_path / "h").resolve() / "artifacts")
    assert s.server_url is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_DB_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("MLPILOT_SERVER_URL", "http://mlp:5080/")
    monkeypatch.setenv("MLPILOT_TOKEN", "mlp_secret")
    s = load_settings()
    assert s.resolved_db_url == "postgresql+psycopg://u@h/db"
    assert s.server_url == "http://mlp:5080"
    assert s.token is not None
    assert s.token.get_secret_value() == "mlp_secret"
    assert "mlp_secret" not in repr(s)


def test_config_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text('[mlpilot]\nport = 6000\nartifact_url = "s3://bucket/x"\n')
    monkeypatch.setenv("MLPILOT_HOME", str(home))
    monkeypatch.setenv("MLPILOT_PORT", "7000")
    s = load_settings()
    assert s.artifact_url == "s3://bucket/x"
    assert s.port == 7000


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MLPILOT_PORT", "eighty"),
        ("MLPILOT_PORT", "70000"),
        ("MLPILOT_SERVER_URL", "ftp://x"),
        ("MLPILOT_LOG_LEVEL", "loud"),
        ("MLPILOT_FLUSH_INTERVAL", "-1"),
        ("MLPILOT_FEATURES_MEMORY_LIMIT", "lots"),
        ("MLPILOT_FEATURES_MEMORY_LIMIT", "2XB"),
        ("MLPILOT_FEATURES_MEMORY_LIMIT", "0MB"),
        ("MLPILOT_FEATURES_MEMORY_LIMIT", "150%"),
        ("MLPILOT_S3_ENDPOINT_URL", "minio:9000"),
    ],
)
def test_bad_values_name_the_key(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var) as info:
        load_settings()
    assert info.value.key == var


def test_missing_explicit_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLPILOT_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="MLPILOT_CONFIG"):
        load_settings()


def test_broken_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    monkeypatch.setenv("MLPILOT_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings()


def test_feature_memory_and_s3_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_HOME", str(tmp_path / "h"))
    s = load_settings()
    assert s.features_memory_limit == "2GB"
    assert s.features_memory_limit_bytes == 2 * 10**9
    assert s.resolved_features_temp_directory == (tmp_path / "h").resolve() / "tmp" / "duckdb"
    assert s.storage_options("s3://bucket/x") == {}
    monkeypatch.setenv("MLPILOT_FEATURES_MEMORY_LIMIT", "1.5GiB")
    monkeypatch.setenv("MLPILOT_FEATURES_TEMP_DIRECTORY", str(tmp_path / "spill"))
    monkeypatch.setenv("MLPILOT_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    s = load_settings()
    assert s.features_memory_limit_bytes == 3 * 2**29
    assert s.resolved_features_temp_directory == tmp_path / "spill"
    assert s.storage_options("s3://bucket/x") == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    assert s.storage_options("/local/folder") == {}
    half = load_settings(features_memory_limit="50%").features_memory_limit_bytes
    assert 0 < half < load_settings(features_memory_limit="100%").features_memory_limit_bytes
