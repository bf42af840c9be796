"""The project's own error types: every failure the platform raises on purpose is one of these."""


class MetricsPlatformError(Exception):
    """Base class for errors raised by the platform itself."""


class ConfigurationError(MetricsPlatformError):
    """A setting is missing or invalid; the message names the offending key."""


class SourceError(MetricsPlatformError):
    """A source could not be read, or answered with something unusable.

    The message always names the source and the cause. `transient` says whether trying again
    may help (the source is down or slow) or not (it answered with something unusable).
    """

    def __init__(self, source: str, cause: str, *, transient: bool = False):
        self.source = source
        self.cause = cause
        self.transient = transient
        super().__init__(f"source {source!r}: {cause}")


class WriteError(MetricsPlatformError):
    """A write to the metric store was refused before anything was changed."""


class DatabaseUnavailableError(MetricsPlatformError):
    """A database could not be reached; the message names it (without its password)."""
