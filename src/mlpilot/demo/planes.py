"""The demo's control plane and data plane, each in a thread of this process: what ``mlpilot server`` and
``mlpilot deploy serve`` would run as two processes.

The control plane is the real application (REST API, rollout controller) over the demo's store; the data plane
loads models over its REST API, follows the deployment's serving document and reports per-variant statistics,
exactly as a separate replica would.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mlpilot.config import Settings

__all__ = ["ControlPlane", "start_control_plane"]


@dataclass
class ControlPlane:
    """A running control plane: its URL and services; :meth:`stop` shuts it down (controller included)."""

    url: str
    services: Any
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _socket: socket.socket = field(repr=False)

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()
        self.services.close()


def start_control_plane(settings: Settings, *, timeout: float = 30.0) -> ControlPlane:
    """Serve the control plane over ``settings``' store on an ephemeral loopback port, with its control loops
    (the rollout controller looks at every deployment each second, after its label feed has turned the labels
    logged since its last look into the rollouts' online accuracy)."""
    import uvicorn

    from mlpilot.api import Services, create_app

    # The demo runs its monitoring checks itself (step 5): keep the scheduled rounds out of the rollout's way.
    services = Services.from_settings(settings.model_copy(update={"monitor_interval": 3600.0}))
    app = create_app(services, background=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mlpilot-control-plane", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            services.close()
            raise RuntimeError(f"the control plane did not start within {timeout} s")
        time.sleep(0.01)
    return ControlPlane(f"http://127.0.0.1:{port}", services, server, thread, sock)
