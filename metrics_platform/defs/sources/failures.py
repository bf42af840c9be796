"""How a source's failure reaches Dagster: one clear message, retried only when it may help, and
never a secret (`metrics_platform.lib.redaction`)."""

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from metrics_platform.lib import redaction
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

    The step's log is redacted from here on (its records and the events it stores: the failure,
    the retries, the materializations' metadata), and so are the failure's description and
    metadata. Any other error whose text holds a secret in use is replaced by a redacted
    `dg.Failure` (not retried: it is not a known transient cause).
    """
    redaction.add_redacting_filter(context.log)
    try:
        yield
    except SourceError as exc:
        partition = partition_label(context)
        raise dg.Failure(
            description=redaction.redact(f"{exc} (partition {partition})"),
            metadata=redaction.redact_value(
                {
                    "source": exc.source,
                    "partition": partition,
                    "cause": exc.cause,
                    "retryable": exc.transient,
                }
            ),
            allow_retries=exc.transient,
        ) from None
    except Exception as exc:
        if not redaction.contains_secret("".join(traceback.format_exception(exc))):
            raise
        failure = isinstance(exc, dg.Failure)
        raise dg.Failure(
            description=redaction.redact(
                f"{exc.description if failure else f'{type(exc).__name__}: {exc}'} "
                f"(partition {partition_label(context)})"
            ),
            metadata=redaction.redact_value(exc.metadata) if failure else None,
            allow_retries=exc.allow_retries if failure else False,
        ) from None
