"""Runs in this process that keep none of their outputs in memory.

`JobDefinition.execute_in_process` (and `dg.materialize`, which calls it) keeps every output of
the run in memory until the run ends, so that its result can hand them back
(`output_for_node`). The platform's outputs are written by the IO manager as soon as they are
produced and nothing reads them back from the result; over a range run, keeping them would hold
the whole window of every asset of the run at once (a year of the 1,000-metric graph: ~90 MiB
per 90 days). `materialize_in_process` runs a selection exactly as `dg.materialize` does, with
Dagster's own in-process entry point told not to keep outputs (`output_capturing_enabled`, the
switch runs launched by the daemon have off). Its result has every event of the run and no
outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.execute_in_process import (
    core_execute_in_process,
    merge_run_tags,
)

_JOB_NAME = "__ephemeral_asset_job__"


def execute_job_in_process(
    job: dg.JobDefinition,
    *,
    instance: dg.DagsterInstance,
    run_config: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(...)` without keeping the outputs."""
    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={})
    run_config = dict(run_config or {})
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral),
        run_config=run_config,
        instance=instance,
        output_capturing_enabled=False,
        raise_on_error=raise_on_error,
        run_tags=merge_run_tags(
            job_def=job,
            partition_key=None,
            tags=tags,
            asset_selection=None,
            instance=instance,
            run_config=run_config,
        ),
        run_id=None,
        asset_selection=frozenset(),
    )


def materialize_in_process(
    assets: Sequence[dg.AssetsDefinition],
    *,
    selection: Sequence[dg.AssetKey],
    instance: dg.DagsterInstance,
    resources: Mapping[str, object],
    run_config: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """`dg.materialize(assets, selection=...)` without keeping the outputs."""
    defs = dg.Definitions(
        jobs=[dg.define_asset_job(name=_JOB_NAME, selection=selection)],
        assets=assets,
        resources=resources,
    )
    return execute_job_in_process(
        defs.resolve_job_def(_JOB_NAME),
        instance=instance,
        run_config=run_config,
        tags=tags,
        raise_on_error=raise_on_error,
    )
