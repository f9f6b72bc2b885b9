"""Errors a user can fix. The CLI prints them as one line and exits with code 2, never a traceback."""


class UserError(Exception):
    """Bad input: config, model directory, source or data. The message is the whole explanation."""


class ConfigError(UserError):
    """A configuration value is missing, unknown or out of range; the message names file and key."""


class ModelError(UserError):
    """A model directory is missing, truncated, corrupted or does not fit the request."""


class SourceError(UserError):
    """A video source cannot be opened or read, or does not fit the model."""


class DataError(UserError):
    """An evaluation data set is incomplete or inconsistent (labels vs. videos)."""
