"""Servers on loopback for the serving tests: uvicorn in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from sftline.record.workspace import Workspace
from sftline.serving.app import Server, create_app
from sftline.serving.config import Deployments


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    server: Server
    url: str
    """Base URL up to /v1."""
    port: int

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")


@contextmanager
def serving(project: Path, deployments: Deployments, model: str | None = None) -> Iterator[Running]:
    """A server on a free port until the block ends; waits until /readyz says ready."""
    import uvicorn

    workspace = Workspace.find(project)
    server = Server(workspace, deployments, model)
    port = free_port()
    config = uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{root}/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not become ready")
        time.sleep(0.05)
    try:
        yield Running(server, f"{root}/v1", port)
    finally:
        uv.should_exit = True
        thread.join(timeout=60)
        workspace.close()
