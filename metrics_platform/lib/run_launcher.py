"""Dagster's default run launcher, with the run worker health check that run monitoring needs.

`DefaultRunLauncher` starts each run in a process of the code server that serves its code
location. When that process dies on its own (killed, out of memory) the code server notices
and fails the run; but when the code server goes too (the host or container restarted, the
daemon and its servers killed), nothing is left to notice: the run stays `STARTED` forever, its
partitions show in progress, and the automation, which waits for in-progress partitions,
never recomputes them. `DefaultRunLauncher` offers run monitoring no way to check on a run
worker, so Dagster's monitoring daemon can only time out runs that never started.

`MonitoredRunLauncher` adds that check: it asks the code server that launched the run (the
address Dagster records on the run) whether it is still executing it. A server that no longer
answers, or answers that it has no such run, means the worker is gone, and the monitoring
daemon marks the run failed (`run_monitoring` in dagster.yaml). An unreachable server is asked
again a few times over a few seconds first, so that a server busy for a moment does not fail a
live run. Runs executed in the process that created them (`metrics-platform materialize`, the demo's
backfill) carry the tags of that process instead (`worker_tags()`: host, pid and the process's
start time, so that a reused pid is not mistaken for it); on the same host, a run whose process
is gone fails the same way. Runs with neither (`dagster asset materialize`, or a process on
another host) cannot be checked and are reported as running; `max_runtime_seconds` bounds them
where it is set.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from dagster import DagsterRun, DefaultRunLauncher
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value

# How often, and how far apart, an unreachable code server is asked before the run is failed.
UNREACHABLE_ATTEMPTS = 3
UNREACHABLE_PAUSE_SECONDS = 2.0
ANSWER_TIMEOUT_SECONDS = 15


WORKER_HOST_TAG = "metrics_platform/worker_host"
WORKER_PID_TAG = "metrics_platform/worker_pid"
WORKER_START_TAG = "metrics_platform/worker_start"


def process_start(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`), or None when
    there is no such process (or no /proc to ask)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat[stat.rindex(")") + 2 :].split()[19]


def worker_tags() -> dict[str, str]:
    """Tags naming this process as the worker of the runs it executes itself."""
    pid = os.getpid()
    tags = {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: str(pid)}
    start = process_start(pid)
    if start is not None:
        tags[WORKER_START_TAG] = start
    return tags


def in_process_worker_health(run: DagsterRun) -> CheckRunHealthResult | None:
    """The health of a run executed by the process its worker tags name, when this host can
    tell (the same host, with /proc); None otherwise."""
    host, pid = run.tags.get(WORKER_HOST_TAG), run.tags.get(WORKER_PID_TAG)
    if not host or not pid or not pid.isdigit() or host != socket.gethostname():
        return None
    if not Path("/proc/self/stat").exists():
        return None
    started = process_start(int(pid))
    expected = run.tags.get(WORKER_START_TAG)
    if started is not None and (expected is None or expected == started):
        return CheckRunHealthResult(WorkerStatus.RUNNING)
    return CheckRunHealthResult(
        WorkerStatus.FAILED,
        f"the process that executed the run (pid {pid} on {host}) is gone",
    )


class MonitoredRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers run monitoring can check on."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        info = run.tags.get(GRPC_INFO_TAG)
        if not info:
            health = in_process_worker_health(run)
            if health is not None:
                return health
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, "not launched through a code server: not checked"
            )
        address = json.loads(info)
        where = address.get("socket") or f"{address.get('host')}:{address.get('port')}"
        client = DagsterGrpcClient(
            port=address.get("port"),
            socket=address.get("socket"),
            host=address.get("host", "localhost"),
            use_ssl=bool(address.get("use_ssl", False)),
        )
        for attempt in range(UNREACHABLE_ATTEMPTS):
            try:
                answer = deserialize_value(
                    client.can_cancel_execution(
                        CanCancelExecutionRequest(run_id=run.run_id),
                        timeout=ANSWER_TIMEOUT_SECONDS,
                    ),
                    CanCancelExecutionResult,
                )
            except DagsterUserCodeUnreachableError:
                if attempt + 1 < UNREACHABLE_ATTEMPTS:
                    time.sleep(UNREACHABLE_PAUSE_SECONDS)
                continue
            if answer.can_cancel:
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            return CheckRunHealthResult(
                WorkerStatus.NOT_FOUND,
                f"the code server at {where} that launched the run is not executing it",
            )
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the code server at {where} that launched the run no longer answers",
        )
