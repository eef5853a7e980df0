"""The one engine factory of the bot's database (the bot store and the canary store share it).

SQLAlchemy 2 over SQLite (default; WAL journal, ``synchronous=NORMAL``: a committed row
survives a crash of the process, and a power loss may lose only the last transactions; see
https://www.sqlite.org/wal.html and ``PRAGMA synchronous``) or PostgreSQL
(``postgresql+psycopg://``; ``postgresql://`` and ``postgres://`` mean psycopg 3).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlgate.core.errors import InfraError, MlgateError, UsageError


#: What to do when psycopg finds no libpq. mlgate[bot] depends on ``psycopg`` without ``[binary]``
#: (psycopg's maintainers: a library depends on ``psycopg`` and leaves the libpq wrapper to the
#: application, https://www.postgresql.org/message-id/CA%2Bmi_8Yxu1845mO5BBTVX3jsYEJqZ8QHWPrSPFDerKoQU2pu1g%40mail.gmail.com),
#: so PostgreSQL uses the system's libpq; bot/Dockerfile installs it (issue 12).
LIBPQ_MISSING = ("PostgreSQL needs the libpq client library and psycopg found none: install it "
                 "(Debian/Ubuntu: apt-get install libpq5; Fedora: dnf install libpq; macOS: brew install libpq), "
                 "or pip install 'psycopg[binary]', which brings its own")


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (the driver mlgate installs)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_database_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (for messages and logs), also when it does not parse."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(?<=:)[^:/@]*(?=@)", "***", url)


def database_target(url: str, *, create: bool, setting: str = "database_url") -> tuple[Any, Path | None]:
    """Check a database URL before any engine is built: (parsed URL, SQLite file or None).

    Args:
        url: SQLAlchemy URL (``postgresql://`` means psycopg 3).
        create: the caller may create the database: the folder of a SQLite file is made. When
            False nothing is created and a SQLite file must exist already.
        setting: the name the user set it by, for messages (``database_url``, ``--database-url``).

    Raises:
        UsageError (exit 2, a configuration error; the URL is named with its password hidden):
            not a SQLAlchemy URL, not sqlite/postgresql, a SQLite folder that cannot be created,
            or (``create=False``) a SQLite file that does not exist.
    """
    safe = safe_database_url(url)
    try:
        parsed = sa.engine.make_url(normalize_url(url))
    except Exception:
        raise UsageError(f"{setting} {safe!r} is not a valid SQLAlchemy URL (expected sqlite:///PATH or "
                         "postgresql://USER:PASSWORD@HOST/DATABASE)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise UsageError(f"{setting} {safe!r}: only sqlite and postgresql databases are supported")
    if backend != "sqlite":
        return parsed, None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return parsed, None
    path = Path(db).expanduser().absolute()
    if not create:
        if not path.is_file():
            raise UsageError(f"{setting} {safe!r}: no database at {path}")
        return parsed, path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{setting} {safe!r}: cannot create the folder {path.parent}: "
                         f"{e.strerror or type(e).__name__}") from None
    return parsed, path


def make_engine(url: str, *, create: bool, setting: str = "database_url") -> tuple[sa.Engine, Path | None]:
    """The engine of a database URL: (engine, SQLite file or None). No connection is opened yet.

    SQLite: connections shareable across threads, a 30 s busy timeout and the pragmas of
    :func:`sqlite_pragmas` on every connection. PostgreSQL: a pool of 8 connections, each
    checked before use (``pool_pre_ping``).

    Args:
        url, create, setting: as for :func:`database_target`.

    Raises:
        UsageError: the URL is not usable as written (see :func:`database_target`), or no engine
            can be built for it (psycopg not installed, no libpq for it to load (:data:`LIBPQ_MISSING`),
            bad options); the password is hidden.
    """
    parsed, sqlite_file = database_target(url, create=create, setting=setting)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["pool_size"] = 8
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except Exception as e:  # the URL as written cannot work: say why, never a traceback
        shown = f"{setting} {safe_database_url(url)!r}"
        if parsed.get_backend_name() == "postgresql" and isinstance(e, ModuleNotFoundError) and e.name == "psycopg":
            raise UsageError(f"{shown}: PostgreSQL needs psycopg, which comes with the bot: "
                             "pip install 'mlgate[bot]'") from None
        if parsed.get_backend_name() == "postgresql" and type(e) is ImportError:
            # psycopg imported, but found no libpq wrapper to load ("no pq wrapper available")
            raise UsageError(f"{shown}: {LIBPQ_MISSING} (psycopg: {str(e).splitlines()[-1].lstrip('- ')[:200]})") from None
        raise UsageError(f"{shown} cannot be used: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", sqlite_pragmas)
    return engine, sqlite_file


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Run on every new SQLite connection: WAL, ``synchronous=NORMAL``, busy timeout, foreign keys."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_size_limit=67108864")  # truncate a grown WAL back to 64 MB after a reset
    cur.close()


def short_error(e: BaseException) -> str:
    """First line of a driver error, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:300]


def schema_error(e: sa.exc.SQLAlchemyError, engine: sa.Engine, setting: str, safe_url: str) -> MlgateError:
    """The mlgate error for a failed ``CREATE``: a SQLite file that cannot be created or opened is a
    configuration error (UsageError, naming ``setting``); anything else an InfraError."""
    if engine.dialect.name == "sqlite" and isinstance(e, sa.exc.DatabaseError) and any(
            m in str(e) for m in ("unable to open database file", "readonly database", "not a database")):
        return UsageError(f"{setting} {safe_url!r}: cannot open or create the SQLite file: {short_error(e)}")
    return InfraError(f"database {safe_url} is not usable: {short_error(e)}")
