"""Opening the record: an engine, migrations to head, sessions."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sftline.errors import RecordError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def read_only_sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names when it exists and this process may not write it or its folder
    (a read-only copy or mount, another user's project); None otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    path = Path(database)
    if not path.is_file():
        return None
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return None if writable else path


def _read_only_connection(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections that only read `path`. A WAL database needs its -shm file, which SQLite creates
    beside it; in a folder nobody can write, and with no -wal file (so no writer is active), the
    file is opened as immutable: read without locks or a -shm file."""
    options = "mode=ro"
    if not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists():
        options += "&immutable=1"
    uri = f"file:{quote(str(path))}?{options}"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return connect


def make_engine(url: str) -> Engine:
    """An engine on `url`. A SQLite file this process may not write is opened read-only: reading
    works, and the first write fails with a `RecordError` that says the record is read-only."""
    read_only = read_only_sqlite_file(url)
    try:
        if read_only is not None:
            engine = create_engine(url, creator=_read_only_connection(read_only))
        else:
            engine = create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise RecordError(f"cannot open the record at {_redact(url)}: {_one_line(exc)}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _foreign_keys if read_only else _sqlite_pragmas)
    return engine


def _foreign_keys(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _one_line(exc: BaseException) -> str:
    """The database's own message for a SQLAlchemy error (without the SQL statement it ran), on
    one line."""
    original = getattr(exc, "orig", None)
    return " ".join(str(original if original is not None else exc).split())


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given; it holds no parsed password
        return url


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def known_revisions() -> set[str]:
    """Every schema revision this sftline's migrations know."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


def upgrade(engine: Engine, *, read_only: bool = False) -> None:
    """Migrate the record to the newest schema (a no-op, which writes nothing, when it is already
    there). A record at a revision this sftline does not know was written by a newer one, and a
    read-only record cannot be migrated: both are refused with a `RecordError`."""
    where = _redact(str(engine.url))
    try:
        current, head = current_revision(engine), head_revision()
        if current == head:
            return
        if current is not None and current not in known_revisions():
            raise RecordError(
                f"the record at {where} is at revision {current}, newer than this sftline ({head}); "
                "upgrade sftline"
            )
        if read_only:
            raise RecordError(
                f"the record at {where} is read-only and at revision {current or 'none'}, older than "
                f"this sftline's {head}: open it once with write access to migrate it"
            )
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise RecordError(f"cannot migrate the record at {where}: {_one_line(exc)}") from exc


class Record:
    """The project record: a migrated database and a session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.read_only_file = read_only_sqlite_file(url)
        """The SQLite file when this process may only read it; reads work, writes are refused."""
        self.engine = make_engine(url)
        upgrade(self.engine, read_only=self.read_only_file is not None)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            if self.read_only_file is not None:
                raise RecordError(
                    f"the record {self.read_only_file} is read-only and this command writes to it; "
                    "run it where the project is writable"
                ) from exc
            raise RecordError(f"record error: {_one_line(exc)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()
