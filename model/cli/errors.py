"""The one error type CLI handlers raise for bad input (exit status 2)."""


class UsageError(Exception):
    """Bad input from the user: the message names the bad value and what would be accepted."""
