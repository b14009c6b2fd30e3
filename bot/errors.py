"""Solace's error hierarchy. Messages are written for the person who has to act on them."""


class SolaceError(Exception):
    """Base class for errors Solace raises on purpose."""


class ConfigError(SolaceError):
    """Invalid or missing configuration, raised at start-up."""


class BackendError(SolaceError):
    """The model backend failed to load or to generate."""


class StorageError(SolaceError):
    """The SQLite store could not be opened, migrated or written."""
