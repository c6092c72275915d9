"""The study's storage: Optuna's own (an RDB URL or a journal file), never a scheduler of ftrisk's.

The default is SQLite in the run folder, which needs nothing started and supports heartbeats: a worker killed
mid-trial stops beating, the next worker to ask for a trial marks it failed, and ``RetryFailedTrialCallback`` enqueues
it again with the same parameters (the retry resumes from the failed trial's folder). ``journal:PATH`` is Optuna's
journal file (a shared filesystem, no database); Optuna gives it no heartbeats, so a killed worker's trial stays
running there until ``ftrisk sweep --fail-stale`` marks it failed. A study remembers the config that created it:
another config in the same storage gets one line, never a mix of two configs' trials.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback

from ftrisk.errors import FtriskError

log = logging.getLogger(__name__)

CONFIG_KEY = "ftrisk_config_key"
#: the pip extra (or package) that brings a driver, by URL scheme
DRIVERS = {"postgresql": "pip install 'ftrisk[postgres]' (psycopg2-binary)", "mysql": "pip install pymysql"}


def mask(url: str) -> str:
    """``url`` with its password replaced by ``***`` (what may be printed or written)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def open_storage(url: str, heartbeat: int, max_retry: int):
    """An Optuna storage for ``url``; one line naming the (masked) URL when it cannot be reached or its driver is
    missing."""
    if url.startswith("journal:"):
        path = Path(url.split(":", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415 -- optuna's optional submodule

        return JournalStorage(JournalFileBackend(str(path)))
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    try:
        return RDBStorage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=4 * heartbeat,
            failed_trial_callback=RetryFailedTrialCallback(max_retry=max_retry),
            engine_kwargs={"connect_args": {"timeout": 60}} if scheme == "sqlite" else None,
        )
    except ModuleNotFoundError as e:
        hint = DRIVERS.get(scheme, f"install the database driver ({e.name})")
        raise FtriskError(f"sweep storage {mask(url)}: the driver '{e.name}' is not installed: {hint}") from None
    except Exception as e:  # noqa: BLE001 -- SQLAlchemy's many connection errors: one line, the URL masked
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FtriskError(f"sweep storage {mask(url)} cannot be reached: {mask(first)[:200]}") from None


def load_study(name: str, storage, config_key: str, sampler=None, pruner=None, create: bool = True):
    """The study ``name`` in ``storage``, created when missing (``create``); one line when it was created by another
    config."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            raise FtriskError(
                f"no study '{name}' in the sweep storage: start `ftrisk sweep CONFIG` (without "
                "--worker) once, or check --storage"
            ) from None
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction="minimize", load_if_exists=True
        )
        if CONFIG_KEY not in study.user_attrs:
            study.set_user_attr(CONFIG_KEY, config_key)
    found = study.user_attrs.get(CONFIG_KEY)
    if found != config_key:
        raise FtriskError(
            f"the study '{name}' in this storage was created by a different config (key {found}, this "
            f"config {config_key}): use another run name or storage, or the config that created it"
        )
    return study


def retried_from(trial) -> int:
    """The number of the first trial of ``trial``'s retries (its own number when it is not a retry): a retry
    resumes in that trial's folder."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    first = RetryFailedTrialCallback.retried_trial_number(frozen)
    return trial.number if first is None else first
