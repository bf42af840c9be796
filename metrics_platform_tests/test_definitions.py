"""The code location as a whole: its shape, a clean load, the instance and the install."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from metrics_platform.definitions import build_definitions
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV

defs = build_definitions(env={PRODUCT_DATABASE_URL_ENV: "postgresql://unused"})

REPO = Path(__file__).resolve().parent.parent


def test_the_asset_graph_runs_source_to_hourly_to_daily():
    graph = defs.resolve_asset_graph()
    hourly = dg.AssetKey(["metrics", "hourly_values"])
    daily = dg.AssetKey(["metrics", "daily_values"])
    hourly_raw = {
        dg.AssetKey(["raw", name])
        for name in (
            "product_db_row_counts",
            "crawler_status",
            "events_hourly",
            "sql_metrics",
            "user_activity",
        )
    }
    daily_raw = {
        dg.AssetKey(["raw", name])
        for name in ("events_daily_timings", "sql_metrics_daily", "retention_cohorts")
    }
    assert hourly_raw | daily_raw | {hourly, daily} <= set(graph.get_all_asset_keys())
    assert hourly_raw <= graph.get(hourly).parent_keys
    assert graph.get(daily).parent_keys == {hourly} | daily_raw
    assert graph.get(hourly).group_name == graph.get(daily).group_name == "metrics"
    for key in hourly_raw | daily_raw:
        assert graph.get(key).group_name != "metrics"
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description for the UI"
        if node.is_materializable:
            assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert {"hourly_metrics", "daily_metrics", "freshness_checks"} <= {
        job.name for job in defs.jobs
    }


def test_definitions_load_without_any_warning():
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import metrics_platform.definitions"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_the_workspace_validates_with_the_dagster_cli(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The command itself notes that it is superseded; nothing loaded from the project warns.
    assert "metrics_platform" not in out.stderr, out.stderr
    location = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]
    assert location["python_module"]["module_name"] == "metrics_platform.definitions"


def test_the_instance_stores_runs_in_postgres_and_queues_them(tmp_path, store_url, monkeypatch):
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("METRICS_PLATFORM_DATABASE_URL", store_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_run_records() == []
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[storage]["config"]["postgres_url"] == {"env": "METRICS_PLATFORM_DATABASE_URL"}


def test_dagster_packages_are_pinned_together_and_pip_check_is_clean():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    from importlib.metadata import version

    assert (
        version("dagster")
        == version("dagster-webserver")
        == version("dagster-graphql")
        == "1.13.27"
    )
    assert version("dagster-postgres") == "0.29.27"


def test_a_source_without_settings_is_shown_disabled_with_its_reason():
    from metrics_platform.definitions import build_definitions

    defs = build_definitions(settings={"product_db": {"tables": [{"table": "users"}]}}, env={})
    graph = defs.resolve_asset_graph()
    raw = graph.get(dg.AssetKey(["raw", "product_db_row_counts"]))
    assert not raw.is_materializable
    assert raw.description.startswith("Disabled: METRICS_PLATFORM_PRODUCT_DATABASE_URL is not set")
    assert raw.group_name == "product_db"
    assert graph.get(dg.AssetKey(["metrics", "hourly_values"])).parent_keys == set()


def test_the_production_instance_config_loads_with_its_queue(tmp_path, store_url, monkeypatch):
    (tmp_path / "dagster.yaml").write_text(
        (REPO / "deploy" / "dagster.production.yaml").read_text()
    )
    monkeypatch.setenv("METRICS_PLATFORM_DAGSTER_DATABASE_URL", store_url)
    monkeypatch.setenv("METRICS_PLATFORM_COMPUTE_LOG_DIR", str(tmp_path / "logs"))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    values = yaml.safe_load((REPO / "deploy" / "helm-values.yaml").read_text())
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {
        "key": "metrics_platform/source",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits["tagConcurrencyLimits"]


def test_every_table_asset_declares_its_columns():
    """Assets stored by the IO manager declare `dagster/column_schema`: shown before the first
    materialization, checked against every output."""
    from metrics_platform_tests.conftest import platform_assets

    stored = [
        spec
        for asset in platform_assets()
        for spec in asset.specs
        if "partition_expr" in spec.metadata
    ]
    assert len(stored) >= 8
    for spec in stored:
        schema = spec.metadata["dagster/column_schema"]
        names = [column.name for column in schema.columns]
        assert names[-1] == "value" and spec.metadata["partition_expr"] in names, spec.key
