"""One consistent snapshot for all the inputs of a step.

An asset with several inputs (the hourly values read every source's raw table) loads them one
after another. Read in separate transactions, a run that writes the sources meanwhile could
make the step combine one source's rows from before that write with another's from after it.
So every input of a step is read in one read-only `REPEATABLE READ` transaction: the first load
opens it (its snapshot is taken by its first query) and the step's later loads reuse it, so
they all see the store as it was at one instant. The transaction ends once the step's output is
written (an output written piece by piece reads its inputs' pieces meanwhile, see `pieces.py`),
or when the run ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from metrics_platform.lib.database import connect


def _step(context) -> tuple[str, str] | None:
    """(run id, step key) of the context's step, or None outside a run."""
    try:
        step_context = context.step_context
        return step_context.run_id, step_context.step.key
    except Exception:  # an input context built outside a run has no step
        return None


class StepSnapshots:
    """The open snapshot transaction of each step that is loading inputs."""

    def __init__(self, url: str):
        self.url = url
        self._connections: dict[tuple[str, str], psycopg2.extensions.connection] = {}
        self._lock = threading.Lock()

    @contextmanager
    def reading(self, context) -> Iterator[psycopg2.extensions.connection]:
        """The step's snapshot connection (opened now if this is its first load); a load
        outside a run gets a transaction of its own."""
        step = _step(context)
        if step is None:
            conn = self._open()
            try:
                yield conn
            finally:
                conn.close()
            return
        with self._lock:
            conn = self._connections.get(step)
            if conn is None or conn.closed:
                conn = self._connections[step] = self._open()
        try:
            yield conn
        except BaseException:
            self.release(context)
            raise

    def release(self, context) -> None:
        """End the step's snapshot, if it has one (its output is written)."""
        step = _step(context)
        with self._lock:
            conn = self._connections.pop(step, None) if step else None
        if conn is not None:
            _close(conn)

    def release_all(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            _close(conn)

    def _open(self) -> psycopg2.extensions.connection:
        conn = connect(self.url, application_name="metrics_platform io_manager")
        conn.set_session(
            isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True
        )
        return conn


def _close(conn: psycopg2.extensions.connection) -> None:
    try:
        conn.rollback()  # read-only: nothing to keep
    except psycopg2.Error:
        pass
    conn.close()
