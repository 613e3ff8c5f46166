"""The review store's one home for connections, sessions and migrations.

`sessions(settings)` is how every reader and writer (ingest, crawl, scoring, the API, the jobs) opens a
transaction. Nothing here migrates implicitly: only `reviewops init` and `reviewops db upgrade` call
`upgrade`; a store without tables fails with an error that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache, partial
from pathlib import Path

from sqlalchemy import Insert, Table, create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InternalError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reviewops.config import Settings, redact_url
from reviewops.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, pool_pre_ping=True, future=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"invalid review database URL {redact_url(url)!r} (REVIEWOPS_DATABASE_URL): {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def insert_new(session: Session, table: Table, unique: tuple[str, ...]) -> Insert:
    """An INSERT that skips rows whose `unique` columns are already stored (ON CONFLICT DO NOTHING), on
    SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        raise StoreError(f"the review store does not support {dialect} (SQLite or PostgreSQL)")
    return dialect_insert(table).on_conflict_do_nothing(index_elements=list(unique))


def check_connection(url: str) -> Engine:
    """The engine for `url`, after proving the database answers (a clear error when it does not)."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(
            f"cannot reach the review database at {redact_url(url)} (REVIEWOPS_DATABASE_URL): {reason}"
        ) from None
    return engine


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate the database at `url` to `revision`; returns the revision it is at."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    engine = check_connection(url)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() or "base"


def downgrade(url: str, revision: str) -> None:
    _verified.discard(url)
    from alembic import command

    engine = check_connection(url)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def require_schema(engine: Engine) -> None:
    if not inspect(engine).has_table("reviews"):
        raise StoreError(
            f"the review database at {redact_url(str(engine.url))} has no tables: run `reviewops db upgrade`"
        )


Sessions = Callable[[], AbstractContextManager[Session]]


def sessions(settings: Settings) -> Sessions:
    """The review store's session factory: each call opens one transaction (`with sessions() as s:`)."""
    return partial(session_scope, settings.db_url)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error. The store must be
    migrated (`reviewops db upgrade`)."""
    if url in _verified:
        engine = get_engine(url)  # proven once in this process; the pool pings connections before use
    else:
        engine = check_connection(url)
        require_schema(engine)
        _verified.add(url)
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except (OperationalError, InternalError) as exc:  # the database failed or refuses writes (read-only)
        session.rollback()
        _verified.discard(url)  # the next session proves the database again, with a clear error
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"the review database at {redact_url(url)} failed: {reason}") from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# databases this process has already reached and found migrated: no probe and schema check per session
_verified: set[str] = set()
