"""How a source's failure reaches Dagster: one clear message, retried only when it may help."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from metrics_platform.lib.errors import SourceError


def partition_label(context: dg.AssetExecutionContext) -> str:
    """The partition or range a run covers, as the UI writes it."""
    if context.has_partition_key:
        return context.partition_key
    if not context.has_partition_key_range:
        return "no partition"
    keys = context.partition_key_range
    return keys.start if keys.start == keys.end else f"{keys.start}...{keys.end}"


@contextmanager
def source_failures(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Turn a `SourceError` into a `dg.Failure` that names the source, the partition and the
    cause.

    A transient cause (the source is down or slow) keeps the asset's retry policy; a payload
    the source got wrong fails at once, since asking again gives the same answer.
    """
    try:
        yield
    except SourceError as exc:
        partition = partition_label(context)
        raise dg.Failure(
            description=f"{exc} (partition {partition})",
            metadata={
                "source": exc.source,
                "partition": partition,
                "cause": exc.cause,
                "retryable": exc.transient,
            },
            allow_retries=exc.transient,
        ) from None
