"""Which model answers a request: the registry's production and canary versions of the served
name (read from the record at most once a second, so a promotion or rollback takes effect on the
next request), a version asked for by name (`NAME@N`), or the one model given with `--model`.

The canary's share is sticky: a hash of the request's `user` (else the API key's name) places a
user in [0, 1); users below the share get the canary, so one user sees one model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftline.errors import ModelError
from sftline.record.workspace import Workspace
from sftline.serving.config import Deployments, RemoteBackend
from sftline.text.share import stable_share

log = logging.getLogger("sftline.serve")

STAGE_TTL_S = 1.0
"""How long the registry's stages are reused before they are read again."""


class UnknownModel(ModelError):
    """The request names a model this server does not serve (404 model_not_found)."""


@dataclass(frozen=True)
class Target:
    """One model a request can go to."""

    served: str
    """The name clients use for the deployment (the registry name, or the --model value)."""
    version: str
    """What answers: NAME@N, a run or a base model's name."""
    route: str
    """production, canary, shadow or direct (a version asked for by name, or --model)."""
    model_hash: str
    folder: Path | None
    remote: RemoteBackend | None = None


class Router:
    def __init__(self, workspace: Workspace, deployments: Deployments, model: str | None) -> None:
        self.workspace = workspace
        self.deployments = deployments
        self.fixed: Target | None = None
        name = deployments.model or workspace.project.config.effective_model_name
        if model is not None:
            if "@" not in model and self._is_registered(model):
                name = model  # a registered name: follow its stages
            else:  # NAME@N, a run, a base model or a folder: that one model, whatever the stages
                self.fixed = self._direct(model, served=model)
        self.name = self.fixed.served if self.fixed else name
        self._stages: dict[str, Target] = {}
        self._shadows: list[Target] | None = None
        self._read_at = -1.0
        self._lock = threading.Lock()

    # --- the registry ---------------------------------------------------------------------

    def _is_registered(self, name: str) -> bool:
        from sftline.record import queries

        with self.workspace.record.session() as session:
            return queries.registered_model(session, name) is not None

    def stages(self) -> dict[str, Target]:
        """{"production": Target, "canary": Target} as the record says now (cached a second)."""
        if self.fixed is not None:
            return {"production": self.fixed}
        with self._lock:
            if time.monotonic() - self._read_at > STAGE_TTL_S:
                self._stages = self._read_stages()
                self._read_at = time.monotonic()
            return dict(self._stages)

    def refresh(self) -> None:
        """Read the stages again on the next request (after this process changed them)."""
        with self._lock:
            self._read_at = -1.0

    def _read_stages(self) -> dict[str, Target]:
        from sftline.record import queries

        found = {}
        with self.workspace.record.session() as session:
            model = queries.registered_model(session, self.name)
            if model is None:
                return {}
            for stage in ("production", "canary"):
                for version in queries.versions_in_stage(session, model, stage):
                    found[stage] = self._target(version.ref, stage, version.model_hash, version.record)
        return found

    def _target(self, version: str, route: str, model_hash: str, record: dict[str, Any]) -> Target:
        folder = Path(record["artifact"]["path"]) if record.get("artifact") else None
        return Target(self.name, version, route, model_hash, folder, self.deployments.backends.get(version))

    def _direct(self, model: str, *, served: str, route: str = "direct") -> Target:
        """A model named outright: NAME@N, a run, a base model or a model folder."""
        from sftline.stations.evaluate import resolve_model
        from sftline.stations.registry import RegistryError, find_version, parse_version

        remote = self.deployments.backends.get(model)
        if "@" in model and not Path(model).exists():
            try:
                parse_version(model)
            except RegistryError:
                raise UnknownModel(f"the model {model!r} does not exist") from None
            with self.workspace.record.session() as session:
                try:
                    version = find_version(session, model)
                except RegistryError as exc:
                    raise UnknownModel(str(exc)) from None
                record, model_hash, ref = version.record, version.model_hash, version.ref
            return Target(served, ref, route, model_hash, Path(record["artifact"]["path"]), remote)
        try:
            resolved = resolve_model(self.workspace, model)
        except ModelError as exc:
            raise UnknownModel(str(exc)) from None
        return Target(served, resolved.name, route, resolved.content_hash, resolved.path, remote)

    # --- choosing ---------------------------------------------------------------------------

    def pick(self, requested: str | None, user: str) -> Target:
        """The target of a request naming `requested` (None or the served name: production, or the
        canary for users within its share; NAME@N: that version) for `user`."""
        stages = self.stages()
        if requested and requested != self.name:
            named = [t for t in stages.values() if t.version == requested]
            if named:  # the production or canary version by its own name: that one, no split
                return named[0]
            if self.fixed is not None or not requested.startswith(f"{self.name}@"):
                raise UnknownModel(
                    f"the model {requested!r} does not exist; this server serves {self.name!r}"
                )
            return self._direct(requested, served=self.name)
        production = stages.get("production")
        canary = stages.get("canary")
        if canary is not None and (production is None or stable_share(user) < self.deployments.canary_share):
            return canary
        if production is None:
            raise UnknownModel(f"{self.name} has no production version yet: `sftline models promote`")
        return production

    def aliases(self) -> set[str]:
        return {t.version for t in self.stages().values()}

    def shadows(self) -> list[Target]:
        """The shadow targets, resolved once (a shadow that does not resolve is left out, and said
        once in the log, rather than failing the requests it would have copied)."""
        with self._lock:
            if self._shadows is None:
                self._shadows = []
                for model in self.deployments.shadows:
                    try:
                        self._shadows.append(self._direct(model, served=self.name, route="shadow"))
                    except UnknownModel as exc:
                        log.warning("shadow %s left out: %s", model, exc)
            return list(self._shadows)


class EngineCache:
    """Engines by model hash (a local engine) or version (a remote one), loaded once, on demand;
    at most `max_loaded` at a time (the least recently used is closed), so requests naming old
    versions one after another cannot fill the machine's memory."""

    def __init__(self, load: Callable[[Target], Any], *, max_loaded: int = 4) -> None:
        self._load = load
        self.max_loaded = max_loaded
        self._engines: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def key(self, target: Target) -> str:
        return f"remote:{target.version}" if target.remote is not None else target.model_hash

    def loaded(self, target: Target) -> Any | None:
        return self._engines.get(self.key(target))

    async def get(self, target: Target) -> Any:
        key = self.key(target)
        if key in self._engines:
            self._engines[key] = self._engines.pop(key)  # most recently used last
            return self._engines[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._engines:
                self._engines[key] = await asyncio.to_thread(self._load, target)
                while len(self._engines) > self.max_loaded:
                    engine = self._engines.pop(next(iter(self._engines)))
                    close = asyncio.ensure_future(engine.close())  # running batches finish first
                    close.add_done_callback(lambda done: done.exception())
        return self._engines[key]

    def all(self) -> list[Any]:
        return list(self._engines.values())
