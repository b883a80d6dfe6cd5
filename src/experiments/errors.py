"""Errors a user can cause, reported in one or two lines without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (a file, an option, a missing key).

    The message is shown as is: it names what is wrong and how to fix it.
    """


class ConfigError(UserError):
    """An option in the composed config has a value the run cannot use."""


class DataError(UserError):
    """A data file is missing or has a malformed row (the message starts with ``file:line:``)."""


class ServiceError(UserError):
    """A remote service (Cohere, Braintrust) refused or failed a request; the message says what to do next."""
