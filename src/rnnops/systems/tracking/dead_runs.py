"""Runs left RUNNING by a dead process, found and marked KILLED."""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping

from rnnops.systems.tracking.lineage import HOST_TAG, PID_TAG, STARTED_TAG, process_started
from rnnops.systems.tracking.store import _sqlite_path, bounded_http_defaults

log = logging.getLogger(__name__)


def _dead_reason(tags: Mapping[str, str], host: str) -> str | None:
    """Why a RUNNING run's process is known to be gone, or None when it may still run."""
    if tags.get(HOST_TAG) != host or not str(tags.get(PID_TAG, "")).isdigit():
        return None  # another machine's run, or one that did not record its process
    pid = int(tags[PID_TAG])
    started = process_started(pid)
    if started is None:
        return f"its process {pid} on {host} is gone"
    recorded = tags.get(STARTED_TAG)
    if recorded and recorded != "unknown" and abs(float(recorded) - float(started)) > 1.0:
        return f"its process {pid} on {host} is gone (the pid now belongs to another process)"
    return None


def reap_dead_runs(dry_run: bool = False) -> list[dict[str, str]]:
    """Mark KILLED the runs left RUNNING by a process of this host that no longer exists.

    A SIGKILL (or a lost machine) leaves nothing to end a run. Only runs that recorded
    their process (tags ``rnnops.pid``, ``rnnops.host``, ``rnnops.pid_started``) on this
    host are judged; runs of other hosts and of live processes are left alone.
    """
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient()
    host = platform.node()
    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    reaped = []
    if not exp_ids:
        return reaped
    for run in client.search_runs(exp_ids, "attributes.status = 'RUNNING'", max_results=10000):
        reason = _dead_reason(run.data.tags, host)
        if reason is None:
            continue
        if not dry_run:
            client.set_tag(run.info.run_id, "rnnops.doctor", f"marked KILLED: {reason}")
            client.set_terminated(run.info.run_id, status="KILLED")
        reaped.append(
            {"run_id": run.info.run_id, "name": run.info.run_name or "", "reason": reason}
        )
    return reaped


def doctor(uri: str, dry_run: bool = False) -> list[dict[str, str]]:
    """:func:`reap_dead_runs` on the store at ``uri`` (nothing to do if it does not exist)."""
    import mlflow

    from rnnops.systems.store_check import check_store

    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    check_store(uri)
    bounded_http_defaults()
    mlflow.set_tracking_uri(uri)
    return reap_dead_runs(dry_run=dry_run)
