"""User-facing errors.

An `LlmfsError` is a user mistake (a bad recipe key, a missing file, a checkpoint that does not match): the
CLI prints its message on one line as `error: ...` and exits with code 2. Its message names the thing that is
wrong (file, key, value) and how to fix it. Any other exception is a bug and keeps its traceback.
"""


class LlmfsError(Exception):
    """A mistake the user can fix; printed in one line, exit code 2."""

    exit_code = 2


class ConfigError(LlmfsError):
    """A recipe or `--set` override that does not fit its dataclass."""


class CheckpointError(LlmfsError):
    """A checkpoint directory that is missing, incomplete, corrupted or does not match its config."""


class DataError(LlmfsError):
    """Input data that cannot be read or has the wrong shape."""


class MissingExtraError(LlmfsError):
    """An optional feature whose package is not installed; names the extra to install."""

    def __init__(self, feature: str, package: str, extra: str):
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'llmfs[{extra}]'"
        )
