"""API keys: read from the environment only, checked before any work, and kept out of every file and record.

Keys never come from the config or the command line (Hydra would copy them into ``.hydra/`` and the tracked
params). A component that needs one calls ``require_key`` in its ``__init__``, so a missing key stops the run
before any data is read, any model loaded or any run recorded. Everything a run hands to a tracker goes through
``redact`` (by value: every secret-looking environment variable's value) and ``scrub`` (by key name).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.errors import ConfigError, UserError

COHERE_KEYS = ("CO_API_KEY", "COHERE_API_KEY")
BRAINTRUST_KEYS = ("BRAINTRUST_API_KEY",)

#: Names that hold secrets: ``*api_key``, ``*token``, ``*password``, ``*credential(s)``, anything with ``secret``.
#: Anchored at the end so that ``max_tokens_per_doc`` or ``TOKENIZERS_PARALLELISM`` are not taken for secrets.
SECRET_NAME = re.compile(r"(api[_-]?key|token|password|credentials?)$|secret", re.IGNORECASE)
REDACTED = "***"
#: Shorter values (``1``, ``true``) are flags, not secrets; redacting them would mangle ordinary text.
MIN_SECRET_LENGTH = 8


def env_key(names: Sequence[str]) -> str | None:
    """The first of ``names`` set (non-empty) in the environment."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def require_key(names: Sequence[str], needed_by: str) -> str:
    """The key from the environment, or a ``ConfigError`` naming the variable to export."""
    value = env_key(names)
    if value is None:
        alternatives = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
        raise ConfigError(
            f"{needed_by} needs an API key: export {names[0]}=<your key>{alternatives}; "
            "keys are read from the environment only."
        )
    return value


def secret_values() -> list[str]:
    """Values of every environment variable whose name looks secret, longest first."""
    values = {
        value
        for name, value in os.environ.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every secret value from the environment replaced by ``***``."""
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return text


def redact_bytes(data: bytes) -> bytes:
    for value in secret_values():
        data = data.replace(value.encode("utf-8"), REDACTED.encode("utf-8"))
    return data


def scrub(value: Any) -> Any:
    """A copy of a nested config: secret-looking keys' values become ``***``, secret values in strings too."""
    if isinstance(value, Mapping):
        return {
            key: (REDACTED if SECRET_NAME.search(str(key)) and item is not None else scrub(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value


def secret_paths(config: Any, prefix: str = "") -> list[str]:
    """Dotted keys of a config that look secret and hold a value (keys belong in the environment)."""
    found: list[str] = []
    if isinstance(config, Mapping):
        for key, item in config.items():
            name = f"{prefix}{key}"
            if SECRET_NAME.search(str(key)) and item is not None:
                found.append(name)
            else:
                found.extend(secret_paths(item, f"{name}."))
    return found


def refuse_secret_options(config: Any) -> None:
    """Raise a ``UserError`` when the config (or the command line) carries a key."""
    found = secret_paths(config)
    if found:
        raise UserError(
            f"{found[0]}: API keys are never taken from the config or the command line (they would be saved "
            "with the run); remove it and export the key in the environment instead (CO_API_KEY, BRAINTRUST_API_KEY)."
        )


def refuse_secret_overrides(arguments: Sequence[str]) -> None:
    """The command-line form of ``refuse_secret_options``: checked before Hydra records the overrides."""
    for argument in arguments:
        key = argument.split("=", 1)[0].lstrip("+~")
        if "=" in argument and SECRET_NAME.search(key.rsplit(".", 1)[-1]):
            refuse_secret_options({key: "given"})


class RedactingFilter(logging.Filter):
    """A handler filter that replaces secret values in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_logs() -> None:
    """Attach a ``RedactingFilter`` to every handler of the root logger (Hydra's console and ``run.log``)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
