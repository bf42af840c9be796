"""How a source's failure reaches Dagster: one clear message, retried only when it may help."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from metrics_platform.lib.errors import SourceError


@contextmanager
def source_failures() -> Iterator[None]:
    """Turn a `SourceError` into a `dg.Failure` that names the source and the cause.

    A transient cause (the source is down or slow) keeps the asset's retry policy; a payload
    the source got wrong fails at once, since asking again gives the same answer.
    """
    try:
        yield
    except SourceError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={
                "source": exc.source,
                "cause": exc.cause,
                "retryable": exc.transient,
            },
            allow_retries=exc.transient,
        ) from None
