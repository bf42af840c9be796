"""In-process runs (`metrics-platform materialize`, the benchmark) keep no output in memory once
the IO manager has written it."""

import gc
import weakref

import dagster as dg

from metrics_platform.lib.in_process import execute_job_in_process, materialize_in_process


class Window:
    """Stands for an asset's frame: weakly referenceable, so the test can see it freed."""


class Keeper(dg.IOManager):
    """Writes nothing and keeps nothing: after `handle_output`, only Dagster could hold the
    object."""

    def __init__(self, seen: list):
        self.seen = seen

    def handle_output(self, context, obj) -> None:
        self.seen.append(weakref.ref(obj))

    def load_input(self, context):
        return Window()


def _assets():
    @dg.asset
    def upstream() -> Window:
        return Window()

    @dg.asset
    def downstream(upstream: Window) -> Window:
        return Window()

    return [upstream, downstream]


def test_a_materialized_output_is_not_kept(tmp_path):
    seen: list = []
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_in_process(
            _assets(),
            selection=[dg.AssetKey("upstream"), dg.AssetKey("downstream")],
            instance=instance,
            resources={"io_manager": Keeper(seen)},
            tags={"team": "metrics"},
        )
        assert result.success
        assert {e.asset_key for e in result.get_asset_materialization_events()} == {
            dg.AssetKey("upstream"),
            dg.AssetKey("downstream"),
        }
        assert instance.get_run_by_id(result.run_id).tags["team"] == "metrics"
        gc.collect()
        assert len(seen) == 2 and all(ref() is None for ref in seen)

        # What Dagster's own in-process execution does: every output held by the result.
        seen.clear()
        kept = dg.materialize(_assets(), instance=instance, resources={"io_manager": Keeper(seen)})
        gc.collect()
        assert kept.success and all(ref() is not None for ref in seen)


def test_a_job_runs_with_its_config_and_failures_reported():
    @dg.op(config_schema={"fail": bool})
    def step(context) -> None:
        if context.op_config["fail"]:
            raise RuntimeError("asked to fail")

    @dg.job
    def one_step():
        step()

    with dg.DagsterInstance.ephemeral() as instance:
        ok = execute_job_in_process(
            one_step, instance=instance, run_config={"ops": {"step": {"config": {"fail": False}}}}
        )
        failed = execute_job_in_process(
            one_step,
            instance=instance,
            run_config={"ops": {"step": {"config": {"fail": True}}}},
            raise_on_error=False,
        )
    assert ok.success and not failed.success
    error = failed.get_step_failure_events()[0].event_specific_data.error
    assert error.cause.message == "RuntimeError: asked to fail\n"
