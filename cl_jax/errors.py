"""Errors a user can fix. ``cl_jax.main`` prints their message, without a traceback."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it."""


class ConfigError(UserError):
    """An invalid or inconsistent configuration."""


class DataError(UserError):
    """A data set that is missing, empty or unreadable."""
