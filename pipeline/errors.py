"""The project's exception hierarchy: one root, specific subclasses."""


class PipelineError(Exception):
    """Root of every error metrics-pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Settings are missing, contradictory or out of range; raised at start-up."""


class CheckpointError(PipelineError):
    """A stored partition checkpoint cannot be read or does not fit the running configuration."""
