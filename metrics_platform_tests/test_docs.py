"""The docs stay true: the "add a new source" walkthrough runs as written, end to end, as a
separate package installed into an environment with the platform; and every shell block of the
README and docs/ runs as written (or the test says why it is not run)."""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from metrics_platform.defs.sources.sql_metrics import build_source as build_sql_metrics
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform_tests.conftest import TEST_SETTINGS, execute, query

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_CREATE = re.compile(r"Create `([^`]+)`")

# Run by the environment the walkthrough's package was installed into.
PLUGIN_RUN = r"""
import json, sys
import dagster as dg
from metrics_platform.definitions import build_definitions

settings = json.loads(sys.argv[1])
defs = build_definitions(settings)
with dg.instance_for_test() as instance:
    result = defs.resolve_job_def("hourly_metrics").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2026-03-10-04:00",
              "dagster/asset_partition_range_end": "2026-03-10-08:00"},
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
without = build_definitions({"product_db": settings["product_db"]})
print(json.dumps({
    "success": result.success,
    "assets": sorted(a.key.to_user_string() for a in defs.assets),
    "groups": sorted({a.group_names_by_key[a.key] for a in defs.assets
                      if isinstance(a, dg.AssetsDefinition)}),
    "schedules": sorted(s.name for s in defs.schedules),
    "disabled": [a.description for a in without.assets
                 if isinstance(a, dg.AssetSpec) and a.key.path == ["raw", "support_tickets"]],
}))
"""


def blocks(text: str) -> list[tuple[str | None, str, str]]:
    """(path, language, code) of every fenced block, with the file path when the text just
    before it says "Create `path`"."""
    found, previous_end = [], 0
    for match in _BLOCK.finditer(text):
        paths = _CREATE.findall(text[previous_end : match.start()])
        found.append((paths[-1] if paths else None, match.group(1), match.group(2)))
        previous_end = match.end()
    return found


def environment_with_the_platform(path: Path) -> Path:
    """A new virtual environment that sees this one's packages (the platform and its
    dependencies) and installs into its own: its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    platform_site = sysconfig.get_paths()["purelib"]
    (Path(site) / "metrics_platform_environment.pth").write_text(
        f"import site; site.addsitedir({platform_site!r})\n"
    )
    return python


def test_the_sql_metrics_example_is_valid_settings():
    text = (DOCS / "add-a-source.md").read_text().split("## A source in its own package")[0]
    (example,) = [code for _, language, code in blocks(text) if language == "yaml"]
    source = build_sql_metrics(
        yaml.safe_load(example)["sql_metrics"], {PRODUCT_DATABASE_URL_ENV: "x"}
    )
    assert source.enabled and source.metrics == ["orders.*"]


def test_the_add_a_source_walkthrough_works_as_written(store_url, product_url, tmp_path):
    text = (DOCS / "add-a-source.md").read_text().split("## A source in its own package")[1]
    found = blocks(text)
    files = [(path, code) for path, _, code in found if path]
    assert [path for path, _ in files] == [
        "support_metrics/pyproject.toml",
        "support_metrics/support_metrics/__init__.py",
    ]
    for path, code in files:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    (source_code,) = [code for path, language, code in found if language == "python"]
    assert len(source_code.strip().splitlines()) <= 50  # short enough to read in one go
    (table_sql,) = [code for _, language, code in found if language == "sql"]
    (install,) = [code for _, language, code in found if language == "bash"]
    (settings_yaml,) = [code for _, language, code in found if language == "yaml"]

    # The table it reads, as the walkthrough creates it, and a few tickets.
    execute(product_url, table_sql)
    execute(
        product_url,
        "INSERT INTO tickets (opened_at) VALUES "
        "('2026-03-10 05:10+00'), ('2026-03-10 05:50+00'), ('2026-03-10 07:00+00')",
    )
    execute(product_url, "CREATE TABLE users (id serial, created_at timestamptz)")

    # The install command, as written, with the new environment's pip.
    python = environment_with_the_platform(tmp_path / "venv")
    command = shlex.split(install.strip())
    assert command[:3] == ["pip", "install", "-e"]
    installed = subprocess.run(
        [str(python), "-m", *command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    settings = {"product_db": TEST_SETTINGS["product_db"], **yaml.safe_load(settings_yaml)}
    env = {
        **os.environ,
        DATABASE_URL_ENV: store_url,
        PRODUCT_DATABASE_URL_ENV: product_url,
        "DAGSTER_HOME": str(tmp_path),
    }
    elsewhere = tmp_path / "run"  # not the folder that holds the package's sources
    elsewhere.mkdir()
    out = subprocess.run(
        [str(python), "-c", PLUGIN_RUN, json.dumps(settings)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["success"]
    assert "raw/support_tickets" in report["assets"] and "support" in report["groups"]
    assert "support_hourly_schedule" in report["schedules"]
    assert report["disabled"] == [
        "Disabled: no `support` section in the settings file. "
        "Support tickets opened in every UTC hour, from the product database."
    ]
    rows = query(
        store_url,
        "SELECT time, value FROM metrics.hourly_values_by_name "
        "WHERE metric = 'support.tickets.opened' ORDER BY time",
    )
    assert [(t.astimezone(timezone.utc).hour, v) for t, v in rows] == [
        (4, 0.0),
        (5, 2.0),
        (6, 0.0),
        (7, 1.0),
        (8, 0.0),
    ]
    complete = query(
        store_url,
        "SELECT sum(value) FROM metrics.hourly_values_by_name WHERE metric = 'platform.hour_complete'",
    )
    assert complete == [(5.0,)]
    kpi = query(
        store_url,
        "SELECT count(*) FROM metrics.hourly_values_by_name WHERE metric = 'kpi.tickets_per_user'",
    )
    assert kpi == [(0,)]  # no user yet: a zero divisor has no value


# --- every documented shell block runs as written --------------------------------------------

REPO_ROOT = DOCS.parent
SHELL_DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))]
# Blocks not run here, by their first line, and why.
NOT_RUN = {
    "make test   # the whole test suite, against real Postgres and Prometheus servers it starts "
    "itself": "the test suite itself: CI runs exactly this (.ci/run)",
    "export DAGSTER_HOME=/var/lib/metrics-platform/dagster": "a production server's setup",
    "pip install -e ./support_metrics": "the walkthrough's package, installed in its own folder "
    "and environment by test_the_add_a_source_walkthrough_works_as_written",
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


def test_only_the_shutdown_race_s_traceback_is_set_aside():
    race = (
        'Traceback (most recent call last):\n  File "launcher.py", line 92, in launch\n'
        "    raise (\ndagster._core.errors." + SHUTDOWN_RACE + "\n"
    )
    other = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad\n'
    assert "Traceback" not in without_shutdown_races("start\n" + race + "stopped\n")
    assert "ValueError: bad" in without_shutdown_races(other + race)
    assert without_shutdown_races(other + race).count("Traceback") == 1


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


# Dagster's own shutdown race: a scheduled run that the daemon launches just as Ctrl-C stops the
# code server fails to start with this error (no run starts; the next tick launches it again).
SHUTDOWN_RACE = (
    "DagsterLaunchFailedError: Tried to start a run on a server after telling it to shut down"
)


def without_shutdown_races(output: str) -> str:
    """The output without the tracebacks of `SHUTDOWN_RACE`, which only a Ctrl-C that lands
    during a schedule's launch prints."""
    return re.sub(
        r"Traceback \(most recent call last\):(?:(?!Traceback).)*?" + re.escape(SHUTDOWN_RACE),
        SHUTDOWN_RACE,
        output,
        flags=re.DOTALL,
    )


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
def test_the_shell_block_runs_as_written(doc, block, docs_env, tmp_path, request):
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
    # `make demo` gets the session's demo home, its year already backfilled (as a user's
    # second start finds it); anything else a seeded one.
    if lines[long_at].startswith("make demo"):
        home = contextlib.nullcontext()
        env = {**request.getfixturevalue("demo_home").env}
        env["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}:{env['PATH']}"
    else:
        home, env = seeded_home("metrics_platform_docs_served_")
    try:
        subprocess.run(
            [*CLI, "db", "stop"], env=env, cwd=REPO_ROOT, capture_output=True, timeout=120
        )
        log = tmp_path / "served.log"
        run_until_served("\n".join(lines[: long_at + 1]), env, log)
        check_output(doc, without_shutdown_races(log.read_text(errors="replace")))
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
