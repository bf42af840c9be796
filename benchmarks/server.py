"""A throwaway PostgreSQL server for one benchmark run: a temp folder, a free port, no fsync."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metrics_platform.lib.database import connect
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres, free_port


@contextmanager
def throwaway_server() -> Iterator[tuple[EmbeddedPostgres, Path]]:
    """A started cluster and a scratch folder next to it; both removed afterwards."""
    # The server may run as the `postgres` user: its folder must be reachable by that user.
    base = Path(tempfile.mkdtemp(prefix="metrics_platform_bench_"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "data", free_port(), fsync=False)
    server.start()
    try:
        yield server, base
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def server_version(url: str) -> str:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return cur.fetchone()[0]
    finally:
        conn.close()
