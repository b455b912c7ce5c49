"""Database engine and sessions of the metadata server (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from runner.metadata.models import Base

T = TypeVar("T", bound=Base)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalise_url(database_url: str) -> str:
    """Route plain ``postgresql://`` (and ``postgres://``) URLs to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; busy_timeout makes concurrent writers wait
    # for the lock instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _private_file(path: str) -> None:
    """Create ``path`` 0600 (SQLite gives its -wal/-shm files the database's mode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for companion in (f"{path}-wal", f"{path}-shm"):
        if os.path.exists(companion):
            os.chmod(companion, 0o600)


def make_engine(database_url: str) -> Engine:
    """Build the engine for ``database_url`` and create any missing table.

    A SQLite database file is private to the user (0600), whatever the umask.
    """
    url = make_url(normalise_url(database_url))
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if url.database not in (None, "", ":memory:") and not url.database.startswith("file:"):
            _private_file(url.database)
        # Requests are served from uvicorn's thread pool; one connection may move threads.
        kwargs["connect_args"] = {"check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool  # one shared in-memory database
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _on_sqlite_connect)
    Base.metadata.create_all(engine)
    add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the columns a newer release gave an existing table (``table.column``, added).

    ``create_all`` creates missing tables only. A column added later is nullable, so an
    ``ALTER TABLE ... ADD COLUMN`` (SQLite and PostgreSQL alike) leaves old rows valid.
    """
    added = []
    existing = inspect(engine)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"column {table.name}.{column.name} must be nullable to add")
            kind = column.type.compile(dialect=engine.dialect)
            ddl = f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(ddl)
            except Exception:
                # Another server process starting on the same database added it first.
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
            added.append(f"{table.name}.{column.name}")
    return added


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit, so responses need no reload query."""
    return sessionmaker(engine, expire_on_commit=False)


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, closed (and rolled back) afterwards."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def fetch_or_404(session: Session, model: type[T], row_id: str, what: str) -> T:
    """The row of ``model`` with primary key ``row_id``, or a 404 naming ``what``."""
    row = session.get(model, row_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} {row_id!r} not found")
    return row


def commit_or_409(session: Session, conflict: str) -> None:
    """Commit, turning a uniqueness violation into a 409 that says what clashed."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=conflict) from exc
