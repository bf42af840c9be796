"""Runs whose processes die end, with the real daemon: a range run launched through the queue
whose run worker and code server are killed (the host went down, while the run was planning or
executing) is marked failed by run monitoring after the daemon comes back, its hours stop
showing in progress, and the automation recomputes them when their source lands them again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml

from metrics_platform.defs.automation.schedules import RANGE_TAGS
from metrics_platform.defs.metrics.assets import HOURLY_VALUES_KEY
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.run_launcher import WORKER_PID_TAG, MonitoredRunLauncher
from metrics_platform_tests.processes import (
    CLI,
    REPO,
    daemon_log,
    dagster_daemon,
    instance_env,
    instance_home,
    launch_job,
)

FIRST, LAST = "2026-03-10-00:00", "2026-03-10-05:00"
SETTINGS = {
    "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
    "prometheus": {
        "queries": [
            {"query": "sum by (job) (up)", "metric": "http.up.{job}", "aggregation": "last"}
        ]
    },
}
# Only for the planning case: the repository's start timeout (3 minutes) made shorter, every
# other setting as in dagster.yaml.
TEST_START_TIMEOUT_SECONDS = 20


def repository_instance_settings() -> dict:
    return yaml.safe_load((REPO / "dagster.yaml").read_text())


def test_the_instance_monitors_runs_with_a_launcher_that_checks_run_workers(
    tmp_path, store_url, monkeypatch
):
    settings = repository_instance_settings()
    monitoring = settings["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_resume_run_attempts"] == 0  # the launcher cannot resume runs
    # "Within minutes": a dead run is noticed within a poll, a run that never started within
    # its start timeout.
    assert monitoring["poll_interval_seconds"] <= 60
    assert monitoring["start_timeout_seconds"] <= 300
    production = yaml.safe_load((REPO / "deploy" / "dagster.production.yaml").read_text())
    assert production["run_launcher"] == settings["run_launcher"]
    assert {
        k: v for k, v in production["run_monitoring"].items() if k != "max_runtime_seconds"
    } == (monitoring)
    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("METRICS_PLATFORM_DATABASE_URL", store_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    return found


def _descendants(root: int, processes: dict[int, tuple[int, str]]) -> list[int]:
    children = [pid for pid, (parent, _) in processes.items() if parent == root]
    return children + [pid for child in children for pid in _descendants(child, processes)]


def _run_workers(daemon_pid: int) -> list[int]:
    """The run worker processes of the daemon's code servers."""
    processes = _processes()
    tree = _descendants(daemon_pid, processes)
    servers = {pid for pid in tree if "api grpc" in processes[pid][1]}
    return [
        pid for pid in tree if processes[pid][0] in servers and "spawn_main" in processes[pid][1]
    ]


def _kill_everything(daemon: subprocess.Popen) -> None:
    """SIGKILL the daemon, its code servers, run workers and their step processes, as a host
    that goes down would."""
    tree = _descendants(daemon.pid, _processes())
    for pid in [daemon.pid, *tree]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    daemon.wait(timeout=30)


@contextmanager
def _daemon(home: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`dagster_daemon`, and afterwards the end of every process it started that outlived it
    (a code server waiting for a run worker that the test killed)."""
    started: dict[int, str] = {}
    try:
        with dagster_daemon(home, env) as daemon:
            try:
                yield daemon
            finally:
                processes = _processes()
                started = {pid: processes[pid][1] for pid in _descendants(daemon.pid, processes)}
    finally:
        for pid, command in started.items():
            if _processes().get(pid, (0, ""))[1] == command:
                os.kill(pid, signal.SIGKILL)


def _launch(env: dict[str, str], job: str) -> None:
    launch_job(env, job, dict(zip(RANGE_TAGS, (FIRST, LAST))))


def _wait(what: str, condition, deadline: float, home: Path, interval: float = 0.2):
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen in time:\n" + daemon_log(home)
        time.sleep(interval)


def _home(prefix: str, start_timeout: int | None) -> Path:
    home = instance_home(prefix)
    if start_timeout is not None:
        settings = repository_instance_settings()
        settings["run_monitoring"]["start_timeout_seconds"] = start_timeout
        (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return home


def _hourly_values_requested(instance: dg.DagsterInstance, after: float) -> bool:
    """Whether the automation launched a run of the hourly values over FIRST...LAST."""
    for record in instance.get_run_records():
        run = record.dagster_run
        if record.create_timestamp.timestamp() < after:
            continue
        if "dagster/sensor_name" not in run.tags or HOURLY_VALUES_KEY not in (
            run.asset_selection or ()
        ):
            continue
        keys = {run.tags.get("dagster/partition")} | {run.tags.get(tag) for tag in RANGE_TAGS}
        if keys & {FIRST, LAST}:
            return True
    return False


@pytest.mark.parametrize("when", ["planning", "execution"])
def test_a_run_whose_processes_die_fails_and_its_hours_are_recomputed(
    store_url, product_url, prometheus_stub, monkeypatch, when
):
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=40
    )
    prometheus_stub.delay = 600  # the Prometheus step is still waiting when the host dies
    start_timeout = TEST_START_TIMEOUT_SECONDS if when == "planning" else None

    def environment(home: Path) -> dict[str, str]:
        env = instance_env(home, SETTINGS, store_url, product_url)
        env["METRICS_PLATFORM_PROMETHEUS_URL"] = prometheus_stub.url
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    first_home = _home("metrics_platform_monitor_", start_timeout)
    env = environment(first_home)
    _launch(env, "hourly_metrics")

    with dg.DagsterInstance.from_config(str(first_home)) as instance:
        (record,) = instance.get_run_records()
        run_id = record.dagster_run.run_id

        def status() -> dg.DagsterRunStatus:
            return instance.get_run_by_id(run_id).status

        with _daemon(first_home, env) as daemon:
            deadline = time.monotonic() + 150
            if when == "planning":
                _wait(
                    "the run worker's start", lambda: _run_workers(daemon.pid), deadline, first_home
                )
                assert status() == dg.DagsterRunStatus.STARTING
            else:
                _wait(
                    "the Prometheus request", lambda: prometheus_stub.requests, deadline, first_home
                )
                # The monitoring daemon looks at the live run and leaves it alone.
                _wait(
                    "a run monitoring check",
                    lambda: f"Checking run {run_id}" in (first_home / "daemon.log").read_text(),
                    deadline,
                    first_home,
                    interval=1,
                )
                assert status() == dg.DagsterRunStatus.STARTED
            _kill_everything(daemon)
        killed_status = status()
        assert not instance.get_run_by_id(run_id).is_finished

        # The daemon comes back (on a copy of the instance file: the first one's folder is gone).
        second_home = _home("metrics_platform_monitor_again_", start_timeout)
        env = environment(second_home)
        with _daemon(second_home, env) as daemon:
            deadline = time.monotonic() + 150
            _wait(
                f"the failure of the run killed while {when} ({killed_status})",
                lambda: status() == dg.DagsterRunStatus.FAILURE,
                deadline,
                second_home,
                interval=1,
            )
            assert daemon.poll() is None, daemon_log(second_home)
            failed_at = time.time()
            # The source lands the hours again; the automation, no longer held back by a run
            # in progress, recomputes them.
            _launch(env, "product_db_hourly")
            _wait(
                "the automation's recomputation of the hours",
                lambda: _hourly_values_requested(instance, failed_at),
                time.monotonic() + 150,
                second_home,
                interval=2,
            )


def test_a_command_line_run_whose_process_dies_fails(
    store_url, product_url, prometheus_stub, monkeypatch
):
    """`metrics-platform materialize` executes its runs in its own process, not through a code
    server: killed with -9 mid-run, its run is failed by run monitoring all the same."""
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=40
    )
    prometheus_stub.delay = 600  # the run is still waiting for Prometheus when it is killed
    home = _home("metrics_platform_monitor_cli_", None)
    env = instance_env(home, SETTINGS, store_url, product_url)
    env["METRICS_PLATFORM_PROMETHEUS_URL"] = prometheus_stub.url
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with dg.DagsterInstance.from_config(str(home)) as instance, _daemon(home, env):
        command = subprocess.Popen(
            [
                *CLI,
                "materialize",
                "--select",
                "group:prometheus",
                "--partitions",
                f"{FIRST}...{LAST}",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 150
            _wait("the Prometheus request", lambda: prometheus_stub.requests, deadline, home)
            (record,) = instance.get_run_records()
            run = record.dagster_run
            assert run.status == dg.DagsterRunStatus.STARTED
            assert run.tags[WORKER_PID_TAG] == str(command.pid)
            os.killpg(command.pid, signal.SIGKILL)
            command.wait(timeout=30)
        finally:
            if command.poll() is None:
                os.killpg(command.pid, signal.SIGKILL)
        _wait(
            "the failure of the killed command's run",
            lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            time.monotonic() + 150,
            home,
            interval=1,
        )
        messages = " ".join(event.message or "" for event in instance.all_logs(run.run_id))
        assert f"the process that executed the run (pid {command.pid} on" in messages
