"""Errors the repositories raise; the admin API maps them to 404 and 409, the CLI to messages."""


class NotFound(LookupError):
    """No row with that id (or name)."""


class Conflict(ValueError):
    """The change would break a uniqueness or ownership rule."""
