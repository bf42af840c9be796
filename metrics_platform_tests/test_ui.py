"""The Dagster UI of `metrics-platform demo`, driven in a real browser.

The platform is started the way a user starts it (`metrics-platform demo`, on the session's
demo home: a project folder with its own embedded Postgres, where a first `demo --no-ui` has
backfilled the year), then Chromium, through Playwright, checks that:

- the global asset lineage shows every asset inside the box of its group, as GraphQL reports it;
- the demo's year of history is there: every partition of every partitioned asset is
  materialized, and the asset's partitions view says so (nothing missing);
- one hourly partition of a source asset can be launched again from the asset's Materialize
  dialog, its run succeeds through the instance's run queue, and the partition is green,
  materialized by that run.

Screenshots of every step are written to `test-artifacts/ui/` (git-ignored), with the demo's
output in `demo.log` there. Chromium is Debian's `/usr/bin/chromium`; without it or without the
`playwright` package the module is skipped, except under CI (`CI` set), where that fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from metrics_platform_tests.processes import REPO, Demo, start_demo

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # checked below: a skip locally, a failure in CI
    sync_playwright = None

ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Wide enough that the whole lineage, fitted to the window, is drawn at a scale where each
# asset is a full node (with its link), not the minimal box of a zoomed-out graph.
VIEWPORT = {"width": 2880, "height": 1620}

# Seconds: the demo backfills a year before serving the UI; runs wait in the instance's queue.
STARTUP_TIMEOUT = 420
RUN_TIMEOUT = 300
UI_TIMEOUT_MS = 60_000

# Every asset the demo defines, with its group.
EXPECTED_GROUPS = {
    "raw/product_db_row_counts": "product_db",
    "raw/crawler_status": "crawlers",
    "raw/events_hourly": "events",
    "raw/events_daily_timings": "events",
    "raw/ga4_report": "ga4",
    "raw/ga4_daily_report": "ga4",
    "raw/prometheus_series": "prometheus",
    "raw/user_activity": "retention",
    "raw/retention_cohorts": "retention",
    "raw/sql_metrics": "sql_metrics",
    "raw/sql_metrics_daily": "sql_metrics",
    "metrics/hourly_values": "metrics",
    "metrics/daily_values": "metrics",
    "metrics/hourly_kpis": "metrics",
    "metrics/daily_kpis": "metrics",
}
# The hourly source asset whose partition is launched from the UI.
HOURLY_ASSET = "raw/crawler_status"
HOUR_FORMAT = "%Y-%m-%d-%H:%M"

MISSING = [
    reason
    for reason, missing in (
        (f"Chromium at {CHROMIUM} (apt-get install chromium)", not CHROMIUM.exists()),
        ("the playwright package (pip install playwright)", sync_playwright is None),
    )
    if missing
]
if MISSING and not os.environ.get("CI"):
    pytest.skip("browser tests need " + " and ".join(MISSING), allow_module_level=True)

pytestmark = pytest.mark.timeout(STARTUP_TIMEOUT + RUN_TIMEOUT + 300)


# --- the platform, started like a user does ------------------------------------------------


def wait_until_serving(platform: Demo) -> None:
    """Wait for the webserver, then for the code location to load."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    platform.wait_for_webserver(deadline)
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    while True:
        entries = platform.graphql(query)["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [
                e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"
            ]
            assert not errors, f"code location failed to load: {errors}"
            return
        assert time.monotonic() < deadline, f"code location still loading: {entries}"
        time.sleep(1)


@pytest.fixture(scope="module")
def platform(demo_home) -> Iterator[Demo]:
    """`metrics-platform demo` on the session's demo home (its year already backfilled by a
    first `demo --no-ui`, as a user's second start finds it), its UI on a free port."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()
    running = start_demo(demo_home.env, ARTIFACTS / "demo.log")
    try:
        wait_until_serving(running)
        # The community pop-up ("NUX") would cover the pages.
        assert running.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        yield running
    finally:
        stop(running.process)


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C for the demo (it stops `dagster dev` and its database), then kill what is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if MISSING:
        pytest.fail("browser tests need " + " and ".join(MISSING), pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, platform: Demo, request) -> Iterator[Page]:
    """A fresh browser context (no remembered UI state) on the platform's UI.

    Tests ask for `page` first: a missing browser then fails before the platform starts."""
    context = browser.new_context(base_url=platform.url, viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    failures_before = request.session.testsfailed
    tab = context.new_page()
    try:
        yield tab
    finally:
        if request.session.testsfailed > failures_before:
            with contextlib.suppress(Exception):  # best effort: the failure is reported anyway
                tab.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"))
        context.close()


def navigation(page: Page, item: str):
    """An entry of the UI's left-hand navigation (its name follows the entry's icon)."""
    return page.get_by_role("navigation").get_by_role("link", name=re.compile(f"{item}$"))


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / name))


# --- the asset lineage ---------------------------------------------------------------------


def graphql_groups(platform: Demo) -> dict[str, str]:
    nodes = platform.graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    return {"/".join(node["assetKey"]["path"]): node["groupName"] for node in nodes}


def svg_box(locator) -> tuple[float, float, float, float]:
    """A graph node's box in the graph's own coordinates: x, y, right, bottom."""
    x, y, width, height = (
        float(locator.get_attribute(attribute)) for attribute in ("x", "y", "width", "height")
    )
    return x, y, x + width, y + height


def choose_graph_setting(page: Page, item: str) -> None:
    """Pick one entry of the graph's settings (gear) menu.

    The graph re-lays itself out after a setting changes, and the open menu can be re-rendered
    under the pointer: a click that never lands is retried with a freshly opened menu."""
    for _ in range(4):
        try:
            page.get_by_role("button", name="settings", exact=True).click()  # the gear (icon only)
            page.get_by_role("menuitem", name=re.compile(item)).click(timeout=15_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"could not choose {item!r} in the graph settings menu")


def test_lineage_shows_every_asset_in_its_group(page, platform):
    groups = graphql_groups(platform)
    assert {key: groups.get(key) for key in EXPECTED_GROUPS} == EXPECTED_GROUPS

    page.goto("/")
    navigation(page, "Lineage").click()
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
    # Collapsed groups hide their assets: expand them all, lay the graph out top-down (sources
    # side by side, metrics under them), and reload so that the graph is fitted to the window.
    group_headers = page.locator("foreignObject.group")
    expect(group_headers.filter(has_text=re.compile(r"^metrics"))).to_be_visible()
    choose_graph_setting(page, "Expand all groups")
    choose_graph_setting(page, "vertical orientation")
    page.keyboard.press("Escape")
    page.reload()
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()

    for key, group in sorted(groups.items()):
        name = key.split("/")[-1]
        node = page.locator("foreignObject").filter(has=page.locator(f'a[href^="/assets/{key}?"]'))
        expect(node, f"no node of {key} in the lineage").to_have_count(1)
        expect(node.get_by_text(name, exact=True)).to_be_in_viewport()
        box = group_headers.filter(has=page.get_by_text(group, exact=True))
        expect(box, f"no box of group {group} in the lineage").to_have_count(1)
        expect(box.get_by_text(group, exact=True)).to_be_in_viewport()
        left, top, right, bottom = svg_box(box)
        x, y, x_end, y_end = svg_box(node)
        assert left <= x and x_end <= right and top <= y and y_end <= bottom, (
            f"{key} is drawn at {(x, y, x_end, y_end)}, outside its group {group} "
            f"at {(left, top, right, bottom)}"
        )
    screenshot(page, "01-lineage.png")


# --- one partition, from the UI ------------------------------------------------------------


PARTITION_STATUSES = """query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } }
  } }
}"""


def materialized_ranges(platform: Demo, key: str) -> list[tuple[str, str]]:
    node = platform.graphql(PARTITION_STATUSES, {"path": key.split("/")})["assetNodeOrError"]
    ranges = node["assetPartitionStatuses"]["ranges"]
    return [(r["startKey"], r["endKey"]) for r in ranges if r["status"] == "MATERIALIZED"]


def is_materialized(platform: Demo, key: str, partition: str) -> bool:
    # Keys of hourly partitions sort like their hours.
    return any(start <= partition <= end for start, end in materialized_ranges(platform, key))


def materializing_runs(platform: Demo, key: str, partition: str) -> list[str]:
    """The runs that materialized one partition."""
    query = """query ($path: [String!]!, $partition: String!) {
      assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
        assetMaterializations(partitions: [$partition]) { runId partition } } } }"""
    node = platform.graphql(query, {"path": key.split("/"), "partition": partition})
    events = node["assetNodeOrError"]["assetMaterializations"]
    assert all(event["partition"] == partition for event in events), events
    return [event["runId"] for event in events]


def wait_for_run(platform: Demo, run_id: str) -> str:
    """Poll the run until it ends (it waits in the queue first); returns its status."""
    query = """query ($runId: ID!) { runOrError(runId: $runId) {
        __typename ... on Run { status } } }"""
    deadline = time.monotonic() + RUN_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        run = platform.graphql(query, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", f"run {run_id}: {run}"
        status = run["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(2)
    daemons = platform.graphql(
        "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
    )
    pytest.fail(
        f"run {run_id} still {status} after {RUN_TIMEOUT}s; daemons: {daemons}\n"
        + platform.log_tail(),
        pytrace=False,
    )


def open_partition(page: Page, key: str, partition: str) -> None:
    """The asset's Partitions tab with one partition picked from its list."""
    page.goto(f"/assets/{key}")
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_placeholder("Filter by name").fill(partition)
    page.get_by_title(partition, exact=True).first.click()
    expect(page).to_have_url(
        re.compile(r"[?&]partition=" + re.escape(partition.replace(":", "%3A")))
    )
    expect(page.get_by_role("progressbar")).to_have_count(0)  # the partition's details loaded


def partition_dot(page: Page, partition: str):
    """The status dot of the partition's row in the list (green: materialized)."""
    row = page.locator("[class*=assetListRow]").filter(has=page.get_by_title(partition, exact=True))
    return row.locator("[style*='border-radius: 100%']")


PARTITIONED_ASSETS = list(EXPECTED_GROUPS)  # every asset of the demo is partitioned


def partition_counts(platform: Demo, key: str) -> tuple[int, int, str, str]:
    """(materialized, total, first key, last key) of an asset, as GraphQL reports them."""
    query = """query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {
        ... on AssetNode { partitionKeysByDimension { partitionKeys } } } }"""
    node = platform.graphql(query, {"path": key.split("/")})["assetNodeOrError"]
    keys = node["partitionKeysByDimension"][0]["partitionKeys"]
    ranges = materialized_ranges(platform, key)
    materialized = sum(1 for k in keys if is_materialized_in(ranges, k))
    return materialized, len(keys), keys[0], keys[-1]


def is_materialized_in(ranges: list[tuple[str, str]], partition: str) -> bool:
    return any(start <= partition <= end for start, end in ranges)


def test_the_demo_year_is_filled_in_every_partitioned_asset(page, platform):
    history_start = re.search(r"^history: from (\S+)", platform.log.read_text(), re.M).group(1)
    for key in PARTITIONED_ASSETS:
        ranges = materialized_ranges(platform, key)
        assert ranges, f"no partition of {key} is materialized"
        first = min(start for start, _ in ranges)
        assert first.startswith(history_start), (key, first)
    done, total, first, last = partition_counts(platform, "metrics/hourly_values")
    # Everything up to the demo's last hour (one more may have closed since it ran).
    assert total >= 365 * 24 and total - done <= 1 and first == f"{history_start}-00:00"

    page.goto("/assets/metrics/hourly_values?view=partitions")
    expect(page.get_by_text(f"{total:,} Partitions Selected", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Materialized ({done})", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Missing ({total - done})", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
    screenshot(page, "02-partitions-filled.png")


def test_launch_one_partition_from_the_ui_and_see_it_materialized(page, platform):
    # A day before the latest hour (the launch dialog offers the last 90 days): materialized
    # by the demo's backfill.
    ranges = materialized_ranges(platform, HOURLY_ASSET)
    assert ranges, f"the demo materialized no partition of {HOURLY_ASSET}"
    latest = datetime.strptime(max(end for _, end in ranges), HOUR_FORMAT)
    partition = (latest - timedelta(days=1)).strftime(HOUR_FORMAT)
    before = materializing_runs(platform, HOURLY_ASSET, partition)
    assert len(before) == 1

    # The asset page, then the partition, green.
    page.goto("/")
    navigation(page, "Catalog").click()
    # The catalog links each asset to its group's lineage.
    group_link = page.locator(f'a[href$="/{HOURLY_ASSET.replace("/", "%2F")}"]')
    expect(group_link).to_have_text(EXPECTED_GROUPS[HOURLY_ASSET])
    page.locator(f'a[href="/assets/{HOURLY_ASSET}"]').click()
    expect(page).to_have_url(re.compile(f"/assets/{HOURLY_ASSET}"))
    expect(page.get_by_role("button", name=re.compile("Materialize…"))).to_be_enabled()
    expect(page.get_by_text("Latest materialization", exact=True)).to_be_visible()
    expect(page.get_by_text("Group", exact=True)).to_be_visible()
    expect(
        page.get_by_role("link", name=EXPECTED_GROUPS[HOURLY_ASSET], exact=True).first
    ).to_be_visible()
    screenshot(page, "03-asset-page.png")
    open_partition(page, HOURLY_ASSET, partition)
    expect(partition_dot(page, partition)).to_have_attribute("style", re.compile("accent-green"))
    expect(page.locator(f'a[href^="/runs/{before[0]}"]').first).to_be_visible()
    screenshot(page, "03-partition-from-the-backfill.png")

    # Materialize → that one partition → Launch.
    page.get_by_role("button", name=re.compile("Materialize…")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"materialize {HOURLY_ASSET.replace('/', ' / ')}")).to_be_visible()
    selection = dialog.get_by_role("textbox").first
    selection.fill(partition)
    selection.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch 1 run", exact=True)
    expect(launch).to_be_enabled()
    screenshot(page, "04-launch-dialog.png")
    with page.expect_response(lambda r: "/graphql?op=LaunchPipelineExecution" in r.url) as launched:
        launch.click()
    result = launched.value.json()["data"]["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["id"]

    # The run: from the launch notice to the run page, queued, started, succeeded.
    notice = page.locator("[data-sonner-toast]").filter(has_text=f"Launched run {run_id[:8]}")
    notice.get_by_role("link", name="View", exact=True).click()
    expect(page).to_have_url(re.compile(f"/runs/{run_id}"))
    expect(page.get_by_text(f"partition: {partition}", exact=True)).to_be_visible()
    status = wait_for_run(platform, run_id)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n" + platform.log_tail()
    expect(page.get_by_text("Success", exact=True)).to_be_visible()
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
    screenshot(page, "05-run-succeeded.png")

    # The partition is green, materialized by that run.
    assert is_materialized(platform, HOURLY_ASSET, partition)
    assert sorted(materializing_runs(platform, HOURLY_ASSET, partition)) == sorted(
        [*before, run_id]
    )
    open_partition(page, HOURLY_ASSET, partition)
    expect(partition_dot(page, partition)).to_have_attribute("style", re.compile("accent-green"))
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    expect(page.locator(f'a[href^="/runs/{run_id}"]').first).to_be_visible()
    screenshot(page, "06-partition-materialized.png")
