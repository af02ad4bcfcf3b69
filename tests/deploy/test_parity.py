"""SDK = REST = CLI: every operation of the deployments service is in the protocol, implemented over REST with
the same parameters, served by a route, and reachable from ``mlpilot deploy``."""

from __future__ import annotations

import inspect

import pytest

from mlpilot.api.routes.deploy import router
from mlpilot.cli.deploy import deploy as deploy_group
from mlpilot.deploy import Deployments, DeploymentsBackend
from mlpilot.remote.deploy import RestDeployments

#: service methods for the control plane's own loops, not for clients: the label feed sets label outcomes;
#: the gate runs inside every start_*; candidate_info is a registry read
LOCAL_ONLY = {"set_label_outcomes", "check_gate", "candidate_info"}

#: each protocol operation: its route (method, path under /api/v1/deployments) and its CLI command
SURFACES: dict[str, tuple[tuple[str, str], str | None]] = {
    "create": (("POST", ""), "create"),
    "get": (("GET", "/{name}"), "show"),
    "list_deployments": (("GET", ""), "list"),
    "history": (("GET", "/{name}/history"), "history"),
    "events": (("GET", "/{name}/events"), "events"),
    "serving_config": (("GET", "/{name}/config"), None),  # for the data plane: `mlpilot deploy serve` follows it
    "delete": (("DELETE", "/{name}"), "delete"),
    "start_canary": (("POST", "/{name}/canary"), "canary"),
    "start_blue_green": (("POST", "/{name}/blue-green"), "blue-green"),
    "start_shadow": (("POST", "/{name}/shadow"), "shadow"),
    "start_ab": (("POST", "/{name}/ab"), "ab"),
    "promote": (("POST", "/{name}/promote"), "promote"),
    "verify_preview": (("POST", "/{name}/verify"), "verify"),
    "advance": (("POST", "/{name}/advance"), "advance"),
    "pause": (("POST", "/{name}/pause"), "pause"),
    "resume": (("POST", "/{name}/resume"), "resume"),
    "rollback": (("POST", "/{name}/rollback"), "rollback"),
    "release_standby": (("POST", "/{name}/release-standby"), "release-standby"),
    "record_observations": (("POST", "/{name}/observations"), None),  # the data plane's reports
    "record_outcomes": (("POST", "/{name}/outcomes"), "outcomes"),
    "analyze": (("GET", "/{name}/analysis"), "analyze"),
}


def _public(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


def _params(func: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(func)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def test_every_service_operation_is_in_the_protocol() -> None:
    assert _public(Deployments) - LOCAL_ONLY == _public(DeploymentsBackend)
    assert set(SURFACES) == _public(DeploymentsBackend)


@pytest.mark.parametrize("operation", sorted(SURFACES))
def test_the_rest_client_takes_the_same_parameters(operation: str) -> None:
    protocol = _params(getattr(DeploymentsBackend, operation))
    assert _params(getattr(RestDeployments, operation)) == protocol
    local = _params(getattr(Deployments, operation))
    # the local service may take more (a holdout of in-memory data for the gate), never less
    assert [p for p in local if p in protocol] == protocol
    assert all(kind == inspect.Parameter.KEYWORD_ONLY for _, kind, _ in set(local) - set(protocol))


def test_every_operation_has_its_route() -> None:
    routes = {(method, route.path) for route in router.routes for method in route.methods}  # type: ignore[attr-defined]
    prefix = "/api/v1/deployments"
    missing = [op for op, ((method, path), _) in SURFACES.items() if (method, prefix + path) not in routes]
    assert not missing


def test_every_client_operation_has_its_command() -> None:
    commands = set(deploy_group.commands)
    missing = [op for op, (_, command) in SURFACES.items() if command is not None and command not in commands]
    assert not missing
