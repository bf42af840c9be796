"""A project-local PostgreSQL server, started and stopped by the platform itself.

Used when no database is configured (the demo) and by the test suite. It runs the machine's own
PostgreSQL server binaries (`initdb`, `pg_ctl`), found on PATH, through `pg_config --bindir` or
under Debian's `/usr/lib/postgresql/<version>/bin`. The cluster lives in a folder of the project,
listens on 127.0.0.1 and on a Unix socket inside its data folder, and trusts local connections
only. PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user,
who must be able to enter every folder above the data folder; when it cannot (a home under a
private folder, as `mktemp -d` makes them), starting says so in one line, with the command that
fixes it, before running anything. A server that does not start is reported the same way, with
the last lines of its log.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from metrics_platform.lib.errors import ConfigurationError, DatabaseUnavailableError

SUPERUSER = "metrics_platform"


def find_server_bindir() -> Path:
    """The folder holding `initdb` and `pg_ctl`, newest version first."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        (Path(p) for p in versioned), key=lambda p: int(p.parent.name), reverse=True
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ConfigurationError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: install Debian's "
        "postgresql package, or set METRICS_PLATFORM_DATABASE_URL to an existing server"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port`."""

    data_dir: Path
    port: int
    # Off only for throwaway clusters (tests, benchmarks): a crash may then lose the data folder.
    fsync: bool = True

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).resolve()
        self.bindir = find_server_bindir()
        self._run_as = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise ConfigurationError(
                    "PostgreSQL cannot run as root and there is no `postgres` system user"
                ) from None

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        """The same database over the Unix socket (no TCP overhead)."""
        return (
            f"postgresql+psycopg2://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port={self.port}"
        )

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            **kwargs,
        )

    def _checked(self, *args: str) -> None:
        out = self._run(*args)
        if out.returncode != 0:
            said = (out.stderr.strip() or out.stdout.strip()).splitlines()
            log = self.data_dir / "server.log"
            if args[0] == "pg_ctl" and log.exists():
                said = log.read_text(errors="replace").splitlines()[-5:]
            reason = " / ".join(line.strip() for line in said if line.strip())[-500:]
            action = "initialize" if args[0] == "initdb" else "start"
            raise DatabaseUnavailableError(
                f"the embedded Postgres in {self.data_dir} did not {action} ({args[0]} exited "
                f"with {out.returncode}): {reason}; or set METRICS_PLATFORM_DATABASE_URL to an "
                "existing server"
            )

    def _check_reachable(self) -> None:
        """As root, the server runs as `postgres`: every folder above the data folder must let
        that user in (execute permission), or initdb fails with "Permission denied"."""
        if self._run_as is None:
            return
        groups = set(os.getgrouplist(self._run_as.pw_name, self._run_as.pw_gid))
        for folder in reversed(self.data_dir.parents):
            if not folder.exists():
                break
            info = folder.stat()
            mode = info.st_mode
            if (
                (info.st_uid == self._run_as.pw_uid and mode & stat.S_IXUSR)
                or (info.st_gid in groups and mode & stat.S_IXGRP)
                or mode & stat.S_IXOTH
            ):
                continue
            raise ConfigurationError(
                f"the embedded Postgres runs as the `postgres` user (PostgreSQL refuses root), "
                f"who cannot enter {folder} ({stat.filemode(mode)}): run `chmod o+x {folder}`, "
                "or set METRICS_PLATFORM_HOME to a folder it can reach, or "
                "METRICS_PLATFORM_DATABASE_URL to an existing server"
            )

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        return (
            self.initialized
            and self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0
        )

    def init(self) -> None:
        self._check_reachable()
        if self.initialized:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._run_as is not None:
            os.chown(self.data_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self._checked(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> EmbeddedPostgres:
        """Initialize the cluster if needed and start it; a running server is left as is."""
        self.init()
        if self.is_running():
            return self
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories='{self.socket_dir}'",
                ""
                if self.fsync
                else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=256MB",
                "-c timezone=UTC",
            ]
        )
        self._checked(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            options,
        )
        return self

    def stop(self) -> None:
        if self.is_running():
            self._checked("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, dbname: str) -> str:
        """Create `dbname` if missing; returns its URL."""
        import psycopg2
        from psycopg2 import sql

        from metrics_platform.lib.database import libpq_url

        conn = psycopg2.connect(libpq_url(self.url("postgres")))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        finally:
            conn.close()
        return self.url(dbname)


@contextmanager
def throwaway_server(prefix: str) -> Iterator[tuple[EmbeddedPostgres, Path]]:
    """A started cluster without fsync in a new temp folder (named `prefix`...), on a free port,
    and that folder for scratch files; both removed afterwards. For tests and benchmarks."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # reachable by the `postgres` user the server may run as
    server = EmbeddedPostgres(base / "data", free_port(), fsync=False)
    server.start()
    try:
        yield server, base
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
