from __future__ import annotations

import pytest

from mlpilot.errors import InvalidInputError
from mlpilot.registry import ModelUri, parse_model_uri
from mlpilot.registry.uri import check_alias, check_model_name


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn@champion", ModelUri("churn", alias="champion")),
        ("models:/churn/3", ModelUri("churn", version=3)),
        ("models:/churn/latest", ModelUri("churn", latest=True)),
        ("models:/churn@latest", ModelUri("churn", latest=True)),
        ("churn@challenger", ModelUri("churn", alias="challenger")),
        ("churn/12", ModelUri("churn", version=12)),
        ("churn/latest", ModelUri("churn", latest=True)),
        ("Churn.v2-eu_1/7", ModelUri("Churn.v2-eu_1", version=7)),
        ("models:/a@b-c_d9", ModelUri("a", alias="b-c_d9")),
    ],
)
def test_valid_uris_parse(uri: str, expected: ModelUri) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "churn",
        "models:/churn",
        "models:/churn/",
        "models:/churn/0",
        "models:/churn/03",
        "models:/churn/-1",
        "models:/churn/1.5",
        "models:/churn/\u0661",  # an Arabic-Indic digit one: isdigit() but not ASCII
        "models:/churn/3/4",
        "models:/churn@",
        "models:/churn@Champion",
        "models:/churn@1st",
        "models:/churn@a/b",
        "models://churn/3",
        "models:/../x/3",
        "models:/@champion",
        "runs:/abc/model",
    ],
)
def test_invalid_uris_name_the_uri_field(uri: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_model_uri(uri)
    assert err.value.field == "uri"


@pytest.mark.parametrize("uri", ["models:/churn@champion", "models:/churn/3", "models:/churn/latest"])
def test_uris_round_trip_through_str(uri: str) -> None:
    assert str(parse_model_uri(uri)) == uri


@pytest.mark.parametrize("alias", ["champion", "challenger", "a", "shadow-2", "eu_west"])
def test_alias_names_accepted(alias: str) -> None:
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "Champion", "1st", "-x", "_x", "a b", "a/b", "latest", "x" * 129])
def test_alias_names_refused(alias: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        check_alias(alias)
    assert err.value.field == "alias"


@pytest.mark.parametrize("name", ["", "a/b", "a@b", "a:b", "-x", ".hidden", "x" * 129, "a b"])
def test_model_names_refused(name: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        check_model_name(name)
    assert err.value.field == "name"
