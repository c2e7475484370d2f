"""Where a study lives: Optuna's own storages, shared by every process that works on the study.

- nothing given: a SQLite file, ``logs/tune/studies.db``, for one machine;
- a database URL (``postgresql://user:password@host/db``): one study for many machines;
- a file path (``/shared/folder/study.log``): Optuna's journal file, for machines that share a folder.

The database storages keep a heartbeat for each running trial: a trial whose worker was killed
stops beating and is marked failed by the next worker that looks (Optuna's ``fail_stale_trials``),
so the study goes on without it. Optuna's journal file has no heartbeat: a killed worker's trial
stays "running" there, and a worker that finds only such trials left stops (docs/tuning.md).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from imgclf.tuning.errors import TuneError

DEFAULT_STORAGE = Path("logs/tune/studies.db")
HEARTBEAT_SECONDS = 10  # how often a running trial's worker says it is alive
GRACE_SECONDS = 30  # after this long without one, the trial's worker is taken for dead


def default_url(root: Path) -> str:
    return f"sqlite:///{(root / DEFAULT_STORAGE).resolve()}"


def is_database(storage: str) -> bool:
    return "://" in storage


def hide_password(storage: str) -> str:
    """The storage as it may be printed: ``postgresql://tuner:***@db.example:5432/studies``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", storage)


def open_storage(storage: str, *, heartbeat: bool = True) -> Any:
    """The Optuna storage named by ``storage`` (a database URL or a journal file's path); with
    ``heartbeat``, running trials record heartbeats (database storages only). A storage that
    cannot be reached raises :class:`TuneError` saying what to check, without the password."""
    import optuna

    if not is_database(storage):
        from optuna.storages.journal import JournalFileBackend

        path = Path(storage)
        if not path.parent.is_dir():
            raise TuneError(f"cannot use the journal file {path}: its folder {path.parent} does not exist "
                            "(on a shared folder, check that it is mounted here)")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's arguments
            return optuna.storages.RDBStorage(
                storage, engine_kwargs=_engine_options(storage),
                heartbeat_interval=HEARTBEAT_SECONDS if heartbeat else None,
                grace_period=GRACE_SECONDS if heartbeat else None)
    except ImportError as error:
        raise TuneError(f"cannot open the study's storage {hide_password(storage)}: its database driver is not "
                        f"installed ({error}); PostgreSQL's, psycopg, comes with requirements.txt") from None
    except Exception as error:  # SQLAlchemy's errors: the server, the URL, the credentials
        if not type(error).__module__.startswith("sqlalchemy"):
            raise
        reason = _first_line(str(getattr(error, "orig", None) or error)).replace(
            _password(storage) or "\0", "***")
        raise TuneError(f"cannot reach the study's storage {hide_password(storage)}: {reason}. Check that the "
                        "database server runs and accepts connections from this machine (host, port, firewall), "
                        "and the user, password and database name in the URL") from None


def _engine_options(storage: str) -> dict[str, Any]:
    if storage.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}}  # an unreachable server fails in seconds, not minutes
    if storage.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # several processes write one file: wait for its lock
    return {}


def _password(storage: str) -> str | None:
    found = re.search(r"://[^:/@]+:([^@]*)@", storage)
    return found.group(1) if found and found.group(1) else None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "unknown error")
