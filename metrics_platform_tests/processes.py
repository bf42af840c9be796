"""Real processes for end-to-end tests: the Dagster daemon on a temporary instance, and
`metrics-platform demo` on a fresh project folder."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from metrics_platform.lib.embedded_postgres import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "metrics_platform.cli"]


def instance_home(prefix: str) -> Path:
    """A fresh DAGSTER_HOME holding the repository's dagster.yaml."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def instance_env(home: Path, settings: dict, store_url: str, product_url: str) -> dict[str, str]:
    """The environment of processes on the instance in `home`: this process's, without any
    METRICS_PLATFORM_ variable, plus the store, the product database and `settings` (written
    to `home/platform.yaml`)."""
    (home / "platform.yaml").write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_PLATFORM_")}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "METRICS_PLATFORM_DATABASE_URL": store_url,
            "METRICS_PLATFORM_PRODUCT_DATABASE_URL": product_url,
            "METRICS_PLATFORM_CONFIG": str(home / "platform.yaml"),
        }
    )
    return env


@contextmanager
def dagster_daemon(home: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on the workspace, logging to `home/daemon.log`; stopped with SIGINT
    (its process group killed if it does not stop), and `home` removed afterwards."""
    with open(home / "daemon.log", "w") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield daemon
        finally:
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGINT)
                try:
                    daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
            shutil.rmtree(home, ignore_errors=True)


def launch_job(env: dict[str, str], job: str, tags: dict[str, str]) -> None:
    """`dagster job launch` of `job` with `tags` on the instance of `env`: queued for the
    daemon."""
    out = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-w", str(REPO / "workspace.yaml")]
        + ["-j", job, "--tags", json.dumps(tags)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr


AUTOMATION_TICK_LINE = "Checking for new runs for sensor: metrics_automation"


def wait_for_ticks(home: Path, daemon: subprocess.Popen, count: int, deadline: float) -> None:
    """Wait until the daemon's `metrics_automation` sensor has started `count` more ticks.

    A tick reads the event log's position when it starts, and an automation condition's first
    evaluation sees nothing as updated: a source landed before the first tick started is never
    followed, so tests that land sources wait for one tick first."""
    log = home / "daemon.log"
    seen = log.read_text().count(AUTOMATION_TICK_LINE)
    while log.read_text().count(AUTOMATION_TICK_LINE) < seen + count:
        assert daemon.poll() is None, daemon_log(home)
        assert time.monotonic() < deadline, "the automation did not tick:\n" + daemon_log(home)
        time.sleep(1)


def daemon_log(home: Path) -> str:
    path = home / "daemon.log"
    return path.read_text()[-4000:] if path.exists() else ""


@contextmanager
def project_home(prefix: str) -> Iterator[dict[str, str]]:
    """The environment of the CLI on an empty project state folder (`METRICS_PLATFORM_HOME`),
    with no database or Dagster home configured and the embedded Postgres on a free port; the
    embedded server stopped (`metrics-platform db stop`) and the folder removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)  # the embedded server may run as the `postgres` user
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("METRICS_PLATFORM_") and k != "DAGSTER_HOME"
    }
    env.update(
        {"METRICS_PLATFORM_HOME": str(home), "METRICS_PLATFORM_EMBEDDED_PORT": str(free_port())}
    )
    try:
        yield env
    finally:
        subprocess.run([*CLI, "db", "stop"], env=env, cwd=REPO, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Demo:
    """`metrics-platform demo` running: its process, in a session of its own (its process group
    can be killed as a whole), the file of its output and the URL of its Dagster UI."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
        return body["data"]

    def wait_for_webserver(self, deadline: float) -> None:
        """Wait until the webserver answers; fail if the demo exits first or at `deadline` (a
        `time.monotonic()` time)."""
        while True:
            assert self.process.poll() is None, (
                f"`metrics-platform demo` exited with {self.process.returncode}:\n"
                + self.log_tail()
            )
            assert time.monotonic() < deadline, (
                "the Dagster UI did not come up in time:\n" + self.log_tail()
            )
            try:
                if requests.get(f"{self.url}/server_info", timeout=5).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)


def start_demo(env: dict[str, str], log: Path) -> Demo:
    """`metrics-platform demo` with the environment `env`, its UI on a free port, its output
    (stderr too) written to `log`."""
    port = free_port()
    with open(log, "w") as output:
        process = subprocess.Popen(
            [*CLI, "demo", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Demo(url=f"http://127.0.0.1:{port}", process=process, log=log)
