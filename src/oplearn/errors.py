"""User-facing exceptions.

Every mistake a user can make (a bad config key, a missing file, a wrong
shape, NaN in data) raises a subclass of :class:`OplearnError` whose message
says what is wrong and how to fix it. The CLI prints ``error: <message>`` and
exits with status 2.
"""


class OplearnError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(OplearnError):
    """A configuration value or command-line option is invalid."""


class DataError(OplearnError):
    """A data file is missing, corrupt, incomplete or has the wrong layout."""


class ShapeError(OplearnError):
    """A tensor has a shape a model or layer cannot take."""


class TrainingError(OplearnError):
    """Training cannot go on (for example the loss became NaN)."""


class SolverError(OplearnError):
    """A PDE solver diverged (NaN or inf); the message names the sample and a remedy."""
