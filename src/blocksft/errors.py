"""The project's error types, on the bottom floor: every module may raise them, none is imported here.

``ConfigError`` and ``DataError`` end a run with one line on stderr and exit status 2
(``blocksft.runs.run.main``); ``NonFiniteLossError`` stops training and keeps the last good checkpoint.

``InvalidValue`` is the ``ConfigError`` of one value out of its range, raised by whatever owns the rule
(a masking strategy's constructor, the decoder's argument check, a settings dataclass) with the config
key the value comes from, so ``validate_config`` can build those objects and pass their error on as it is::

    strategy.masking.p_max=1.5 is invalid: allowed a number in (0, 1]

``require(condition, key, value, allowed)`` raises it; ``is_int``/``is_number`` are the type tests the
rules share (a bool is neither).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message is a single line naming the key."""


class InvalidValue(ConfigError):
    """``key=value is invalid: allowed ...``: one value, the config key it comes from, what the key allows."""

    def __init__(self, key: str, value, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is invalid: allowed {allowed}")

    def __reduce__(self):  # picklable (raised in a worker process, re-raised in the parent)
        return type(self), (self.key, self.value, self.allowed)


class DataError(ValueError):
    """The data cannot give a run (e.g. no usable training row); the message names the file."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the run stops and keeps its last good checkpoint."""


def require(condition: bool, key: str, value, allowed: str) -> None:
    """Raise ``InvalidValue(key, value, allowed)`` unless ``condition``."""
    if not condition:
        raise InvalidValue(key, value, allowed)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
