"""What the demo's steps share: the client, the console, the generated data and what each step produced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlpilot.client import Client

if TYPE_CHECKING:
    from mlpilot.deploy import Deployments

__all__ = ["ENDPOINT", "EXPERIMENT", "MODEL_NAME", "SERVICE", "DemoState", "progress"]

MODEL_NAME = "churn"
EXPERIMENT = "churn-demo"
#: the deployment (endpoint) name and the feature service the endpoint looks its inputs up from
ENDPOINT = "churn"
SERVICE = "churn"


@dataclass
class DemoState:
    client: Client
    console: Console
    rows: int
    seed: int
    #: what the steps produced, by name (frames, reports, paths); the tests read it
    data: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    versions: list[Any] = field(default_factory=list)
    champion: Any = None
    #: the feature store of the demo (a :class:`mlpilot.demo.featurestore.DemoFeatures`), once step 2 ran
    features: Any = None

    @property
    def embedded(self) -> bool:
        """Whether the client works on the embedded store (not a remote ``mlpilot server``)."""
        from mlpilot.deploy import Deployments

        return isinstance(self.client.deployments, Deployments)

    @property
    def deployments(self) -> Deployments:
        """The embedded deployments service: the SDK side that runs gates on a holdout."""
        from mlpilot.deploy import Deployments

        assert isinstance(self.client.deployments, Deployments), "the rollout steps need the embedded store"
        return self.client.deployments

    def skip(self, what: str) -> None:
        self.console.print(f"[yellow]{what} skipped:[/yellow] it needs the embedded store (run the demo without --url)")


@contextmanager
def progress(console: Console) -> Iterator[Progress]:
    """A transient progress display: spinner, description, bar, count and elapsed time."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        yield bar
