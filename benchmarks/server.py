"""The benchmark's throwaway PostgreSQL server (a temp folder, a free port, no fsync) and its
version."""

from __future__ import annotations

from functools import partial

from metrics_platform.lib.database import connect
from metrics_platform.lib.embedded_postgres import throwaway_server as _throwaway_server

throwaway_server = partial(_throwaway_server, "metrics_platform_bench_")


def server_version(url: str) -> str:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return cur.fetchone()[0]
    finally:
        conn.close()
