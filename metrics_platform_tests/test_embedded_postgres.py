"""The embedded Postgres starts wherever the project home is, or says in one line what to
change: as root, the server runs as the `postgres` user, who may not be able to enter the
folder the home is in (`mktemp -d` makes private ones)."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from metrics_platform.lib.embedded_postgres import free_port
from metrics_platform_tests.processes import CLI, REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user matters as root")


def cli_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("METRICS_PLATFORM_") and k != "DAGSTER_HOME"
    }
    env.update(
        {"METRICS_PLATFORM_HOME": str(home), "METRICS_PLATFORM_EMBEDDED_PORT": str(free_port())}
    )
    return env


def test_a_home_inside_a_private_folder_gets_one_line_saying_what_to_change():
    private = Path(tempfile.mkdtemp(prefix="metrics_platform_private_"))  # 0700, root's
    try:
        env = cli_env(private / "home")
        result = subprocess.run(
            [*CLI, "db", "start"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0] == (
            "metrics-platform: the embedded Postgres runs as the `postgres` user (PostgreSQL "
            f"refuses root), who cannot enter {private} (drwx------): run `chmod o+x {private}`, "
            "or set METRICS_PLATFORM_HOME to a folder it can reach, or "
            "METRICS_PLATFORM_DATABASE_URL to an existing server"
        )

        # Doing what it says works.
        private.chmod(0o701)
        started = subprocess.run(
            [*CLI, "db", "start"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert started.returncode == 0, started.stdout + started.stderr
        assert started.stdout.startswith("postgresql+psycopg2://")
    finally:
        subprocess.run([*CLI, "db", "stop"], env=env, cwd=REPO, capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(private)], check=False)


def test_a_server_that_cannot_start_is_one_line_with_its_log():
    home = Path(tempfile.mkdtemp(prefix="metrics_platform_busy_"))
    home.chmod(0o755)
    try:
        env = cli_env(home)
        first = subprocess.run(
            [*CLI, "db", "start"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert first.returncode == 0, first.stderr
        # A second cluster on the same port cannot listen.
        other = cli_env(home / "other")
        other["METRICS_PLATFORM_EMBEDDED_PORT"] = env["METRICS_PLATFORM_EMBEDDED_PORT"]
        second = subprocess.run(
            [*CLI, "db", "start"], env=other, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stdout + second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "did not start" in lines[0], second.stderr
        assert "Address already in use" in lines[0] and "Traceback" not in second.stderr
    finally:
        for each in (env, other):
            subprocess.run(
                [*CLI, "db", "stop"], env=each, cwd=REPO, capture_output=True, timeout=120
            )
        subprocess.run(["rm", "-rf", str(home)], check=False)
