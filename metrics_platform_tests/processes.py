"""Real Dagster processes for end-to-end tests: the daemon on a temporary instance."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def instance_home(prefix: str) -> Path:
    """A fresh DAGSTER_HOME holding the repository's dagster.yaml."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


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


def daemon_log(home: Path) -> str:
    path = home / "daemon.log"
    return path.read_text()[-4000:] if path.exists() else ""
