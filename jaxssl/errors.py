"""Errors a user can fix: the command line prints the message alone and exits with status 2.

Raise `UserError` (or a subclass) where the input is wrong (a config, a dataset, a checkpoint,
a topology) with a message that says what to do. ``jaxssl`` commands print ``error: MESSAGE``
without a traceback; ``JAXSSL_DEBUG=1`` or ``--verbose`` shows the traceback too. Library code
keeps ordinary exception semantics: callers can catch these like any other exception.
"""


class UserError(Exception):
    """A mistake in the command, config, data or run directory; the message says what to do."""


class ConfigError(UserError, ValueError):
    """A config value or flag that cannot work (an unknown name, a batch that does not split)."""


class DataError(UserError, ValueError):
    """A dataset that is empty, malformed or unreadable."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the command needs is not there (a dataset, a run's directory)."""


class PeerLostError(UserError, RuntimeError):
    """Another process of a multi-process run died or lost its connection; relaunch them all."""
