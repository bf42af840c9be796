"""The docs stay true: the "add a new source" walkthrough's code runs as written, and so does
every shell block of the README and docs/ (or the test says why it is not run)."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from metrics_platform import definitions
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform_tests.conftest import RANGE_TAGS, TEST_SETTINGS, execute, query

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_add_a_source_walkthrough_works_as_written(
    store_url, product_url, monkeypatch, tmp_path
):
    text = (DOCS / "add-a-source.md").read_text()
    source_code = re.findall(r"```python\n(.*?)```", text, re.DOTALL)[0]
    assert len(source_code.strip().splitlines()) <= 40  # short enough to read in one go
    package = tmp_path / "walkthrough_sources" / "support"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(source_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    from walkthrough_sources import support  # noqa: PLC0415 - created just above

    monkeypatch.setitem(definitions.SOURCE_BUILDERS, support.SOURCE, support.build_source)
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    execute(product_url, "CREATE TABLE tickets (id serial, opened_at timestamptz NOT NULL)")
    execute(
        product_url,
        "INSERT INTO tickets (opened_at) VALUES "
        "('2026-03-10 05:10+00'), ('2026-03-10 05:50+00'), ('2026-03-10 07:00+00')",
    )
    execute(product_url, "CREATE TABLE users (id serial, created_at timestamptz)")

    settings = {
        "product_db": TEST_SETTINGS["product_db"],
        "support": {},
        "kpis": [
            {
                "name": "kpi.tickets_per_user",
                "formula": "support.tickets.opened / objects.users.count",
            }
        ],
    }
    defs = definitions.build_definitions(settings)
    assert "support_hourly_schedule" in {s.name for s in defs.schedules}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("hourly_metrics").execute_in_process(
            instance=instance, tags=dict(zip(RANGE_TAGS, ("2026-03-10-04:00", "2026-03-10-08:00")))
        )
    assert result.success
    rows = query(
        store_url,
        "SELECT time, value FROM metrics.hourly_values_by_name "
        "WHERE metric = 'support.tickets.opened' ORDER BY time",
    )
    assert [(t.astimezone(timezone.utc).hour, v) for t, v in rows] == [(5, 2.0), (7, 1.0)]
    sys.modules.pop("walkthrough_sources.support", None)
    sys.modules.pop("walkthrough_sources", None)


# --- every documented shell block runs as written --------------------------------------------

REPO_ROOT = DOCS.parent
SHELL_DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))]
# Blocks not run here, by their first line, and why.
NOT_RUN = {
    "make test   # the whole test suite, against real Postgres and Prometheus servers it starts "
    "itself": "the test suite itself: CI runs exactly this (.ci/run)",
    "export DAGSTER_HOME=/var/lib/metrics-platform/dagster": "a production server's setup",
}
# Commands that serve until Ctrl-C: run in a network namespace of their own (the UI's port 3000
# is theirs there), until the UI is served, then stopped with SIGINT as a user would.
LONG_RUNNING = ("make demo", ".venv/bin/dg dev")
SERVING = "Serving dagster-webserver on http://127.0.0.1:3000"
NO_WARNINGS = (
    "SupersessionWarning",
    "DeprecationWarning",
    "BetaWarning",
    "will not be used",
    "Traceback",
)


def shell_blocks() -> list[tuple[str, str]]:
    blocks = []
    for name in SHELL_DOCS:
        text = (REPO_ROOT / name).read_text()
        for block in re.findall(r"^ *```bash\n(.*?)^ *```", text, re.DOTALL | re.MULTILINE):
            blocks.append((name, "\n".join(line.strip() for line in block.splitlines())))
    return blocks


BLOCKS = shell_blocks()


def first_line(block: str) -> str:
    return block.splitlines()[0].strip()


def test_every_shell_block_is_run_or_says_why_not():
    firsts = [first_line(block) for _, block in BLOCKS]
    assert set(NOT_RUN) <= set(firsts), set(NOT_RUN) - set(firsts)
    assert len(BLOCKS) >= 8


def seeded_home(prefix: str):
    """A project home after the first steps: the embedded database initialized, with a demo
    product database in it (left running)."""
    from metrics_platform.lib.demo_data import seed_product_database
    from metrics_platform_tests.processes import CLI, project_home

    home = project_home(prefix)
    env = home.__enter__()
    env["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}:{env['PATH']}"
    exported = subprocess.run(
        [*CLI, "env"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert exported.returncode == 0, exported.stderr
    settings = dict(re.findall(r"^export (\w+)='(.*)'$", exported.stdout, re.M))
    # The year the docs' examples cover (2025), and a little more.
    seed_product_database(
        settings[PRODUCT_DATABASE_URL_ENV],
        now=datetime(2026, 1, 2, tzinfo=timezone.utc),
        days=367,
        users=500,
    )
    return home, env


@pytest.fixture(scope="module")
def docs_env():
    home, env = seeded_home("metrics_platform_docs_")
    try:
        yield env
    finally:
        home.__exit__(None, None, None)


def check_output(where: str, output: str) -> None:
    for warning in NO_WARNINGS:
        assert warning not in output, f"{where}: {warning!r} in the output:\n{output[-3000:]}"


def run_until_served(part: str, env: dict[str, str], log: Path) -> None:
    """Run `part` (ending with a command that serves the UI) in a network namespace of its own;
    once the UI is served, Ctrl-C it and wait for it to stop."""
    script = f"ip link set lo up && exec bash -e -o pipefail -c {shlex.quote(part)}"
    with open(log, "w") as output:
        process = subprocess.Popen(
            ["unshare", "--net", "bash", "-c", script],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 270
        while SERVING not in log.read_text(errors="replace"):
            assert process.poll() is None, (
                f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "the UI was not served:\n" + log.read_text()[-3000:]
            time.sleep(1)
        time.sleep(5)  # let the daemon and the code location settle, as a user would look
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "doc, block",
    [b for b in BLOCKS if first_line(b[1]) not in NOT_RUN],
    ids=[
        f"{doc}:{first_line(block)[:40]}"
        for doc, block in BLOCKS
        if first_line(block) not in NOT_RUN
    ],
)
def test_the_shell_block_runs_as_written(doc, block, docs_env, tmp_path):
    from metrics_platform_tests.processes import CLI

    lines = block.splitlines()
    long_at = next((i for i, line in enumerate(lines) if line.startswith(LONG_RUNNING)), None)
    if long_at is None:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            env=docs_env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=540,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{doc}:\n{block}\n---\n{output[-4000:]}"
        check_output(doc, output)
        return
    # A serving command starts its own embedded database, in its namespace: a home of its own.
    home, env = seeded_home("metrics_platform_docs_served_")
    try:
        subprocess.run(
            [*CLI, "db", "stop"], env=env, cwd=REPO_ROOT, capture_output=True, timeout=120
        )
        log = tmp_path / "served.log"
        run_until_served("\n".join(lines[: long_at + 1]), env, log)
        check_output(doc, log.read_text(errors="replace"))
        rest = "\n".join(lines[long_at + 1 :])
        if rest.strip():
            after = subprocess.run(
                ["bash", "-e", "-c", rest],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert after.returncode == 0, after.stdout + after.stderr
    finally:
        home.__exit__(None, None, None)
