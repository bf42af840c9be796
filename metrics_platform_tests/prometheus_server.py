"""A real Prometheus server for the tests, holding known series backfilled into the past.

The series cover `HOURS` whole UTC hours ending a few days ago, scraped every 60 s at 30 s past
each minute, so no sample lies on an hour boundary and every hour holds exactly 60 samples:

- `http_requests_total{job, instance}`: counters with a constant whole increment per scrape
  within each hour (`increment`), starting at 1000; `web/a` restarts from zero once.
- `queue_depth{queue}`: gauges with whole values (`queue_depth`).
- `cache_hit_ratio{cache="sessions"}`: a gauge that is NaN at the end of `NAN_HOUR`.

The samples are written as OpenMetrics, turned into TSDB blocks with `promtool tsdb
create-blocks-from openmetrics` before the server starts (a server with short retention would
delete blocks this old), and served by `prometheus` on a free loopback port. Test modules wrap
`running_prometheus` in a session-scoped fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from metrics_platform.lib.embedded_postgres import free_port

HOURS = 72
SCRAPE = 60
ONE_HOUR = timedelta(hours=1)
COUNTERS = [("api", "a"), ("api", "b"), ("web", "a")]
QUEUES = {"emails": 5, "billing": 17}
NAN_HOUR = 10
RESTART = (30, 20)  # web/a restarts at minute 20 of hour 30


def increment(job: str, instance: str, hour: int) -> int:
    """How much a counter grows at each scrape of data hour `hour` (0 is the first)."""
    return hour % 7 + 1 + (2 if instance == "b" else 0) + (3 if job == "web" else 0)


def queue_depth(queue: str, hour: int, minute: int) -> int:
    return (hour * 7 + minute * 3 + QUEUES[queue]) % 50


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    start: datetime  # first hour with samples
    end: datetime  # end of the last hour with samples

    def hour(self, index: int) -> datetime:
        return self.start + index * ONE_HOUR


def openmetrics(start: datetime) -> str:
    """The test series as an OpenMetrics exposition, with timestamps (seconds)."""
    t0 = int(start.timestamp()) + SCRAPE // 2
    scrapes = [(h, m, t0 + (h * 60 + m) * SCRAPE) for h in range(HOURS) for m in range(60)]
    lines = ["# TYPE http_requests counter"]
    for job, instance in COUNTERS:
        value = 1000
        for h, m, t in scrapes:
            value = 0 if (job, instance, h, m) == ("web", "a", *RESTART) else value
            value += increment(job, instance, h)
            lines.append(f'http_requests_total{{job="{job}",instance="{instance}"}} {value} {t}')
    lines.append("# TYPE queue_depth gauge")
    for queue in QUEUES:
        lines += [
            f'queue_depth{{queue="{queue}"}} {queue_depth(queue, h, m)} {t}' for h, m, t in scrapes
        ]
    lines.append("# TYPE cache_hit_ratio gauge")
    lines += [
        f'cache_hit_ratio{{cache="sessions"}} {"NaN" if (h, m) == (NAN_HOUR, 59) else 0.5} {t}'
        for h, m, t in scrapes
    ]
    return "\n".join([*lines, "# EOF", ""])


def binaries() -> tuple[str, str]:
    """`prometheus` and `promtool`; missing ones skip the tests, or fail them under CI."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if not all(found):
        message = "prometheus and promtool are not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextmanager
def running_prometheus(backfilled: bool = True) -> Iterator[PrometheusServer]:
    """A real Prometheus with the test series, on 127.0.0.1 and a free port; without them
    (`backfilled=False`) it answers no series for their hours, as any Prometheus does for
    hours older than its retention."""
    prometheus, promtool = binaries()
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=4) - HOURS * ONE_HOUR
    base = Path(tempfile.mkdtemp(prefix="metrics_platform_prometheus_"))
    data = base / "data"
    (base / "series.om").write_text(openmetrics(start))
    (base / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")  # no scrape targets
    if backfilled:
        subprocess.run(
            [
                *(promtool, "tsdb", "create-blocks-from", "openmetrics"),
                *(str(base / "series.om"), str(data)),
            ],
            check=True,
            capture_output=True,
        )
    url = f"http://127.0.0.1:{free_port()}"
    with open(base / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(url, process, base / "prometheus.log")
        yield PrometheusServer(url, start, start + HOURS * ONE_HOUR)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus was not ready within 60 s:\n{log.read_text()[-2000:]}")
