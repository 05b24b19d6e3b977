"""User-facing errors.

Anything raised as :class:`SnapsightError` is an expected failure caused by input (a missing folder, a
config typo, an unreadable checkpoint). The CLI prints its message as one line and exits with status 2;
no traceback is shown, because the message already says what to do.
"""


class SnapsightError(Exception):
    """An error whose message is meant for the user, not a bug report."""


class ConfigError(SnapsightError, ValueError):
    """A config file or override is invalid (unknown key, wrong type)."""


class ImageError(SnapsightError, ValueError):
    """An image could not be opened or is refused (corrupt, not an image, too large)."""
