"""The project's own error types: every failure the platform raises on purpose is one of these.

Their messages are redacted when they are made (`metrics_platform.lib.redaction`): no secret in
use reaches an error's text, whatever a source or a library put in it.
"""

from metrics_platform.lib.redaction import redact


class MetricsPlatformError(Exception):
    """Base class for errors raised by the platform itself; its message holds no secret."""

    def __init__(self, *args):
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigurationError(MetricsPlatformError):
    """A setting is missing or invalid; the message names the offending key."""


class SourceError(MetricsPlatformError):
    """A source could not be read, or answered with something unusable.

    The message always names the source and the cause. `transient` says whether trying again
    may help (the source is down or slow) or not (it answered with something unusable).
    """

    def __init__(self, source: str, cause: str, *, transient: bool = False):
        self.source = source
        self.cause = redact(cause)
        self.transient = transient
        super().__init__(f"source {source!r}: {self.cause}")


class WriteError(MetricsPlatformError):
    """A write to the metric store was refused before anything was changed."""


class DatabaseUnavailableError(MetricsPlatformError):
    """A database could not be reached; the message names it (without its password)."""
