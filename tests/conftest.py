from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does (see sftline/cli/main.py)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("SFTLINE_DB_URL", None)

REPO = Path(__file__).resolve().parents[1]
CLINC = REPO / "examples" / "clinc150"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A PostgreSQL server for the session; skips (or fails, under SFTLINE_REQUIRE_POSTGRES=1) without one."""
    from tests.support.postgres import TempPostgres

    try:
        server = TempPostgres().start()
    except (RuntimeError, OSError, KeyError) as exc:
        if os.environ.get("SFTLINE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but could not start: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty record database: SQLite in tmp_path, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'record.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.new_database()  # type: ignore[attr-defined]


@pytest.fixture
def project_dir(tmp_path: Path, record_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An initialised project whose record is `record_url` (SQLite or PostgreSQL)."""
    from sftline.project_init import init_project

    if record_url.startswith("postgresql"):
        monkeypatch.setenv("SFTLINE_DB_URL", record_url)
    folder = tmp_path / "proj"
    init_project(folder, task="chat")
    monkeypatch.chdir(folder)
    return folder
