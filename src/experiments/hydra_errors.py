"""Hydra's own user errors (an unknown option, an unknown key, a malformed override) as one line and exit 2.

Hydra prints them over 7 to 15 lines (the search path, the object type, a hint about ``HYDRA_FULL_ERROR``) and
exits 1, like a crash; every other user mistake here is one line and exit 2. ``one_line_config_errors`` wraps
Hydra's reporter so its compact errors (config composition, missing config option, override grammar) are told
in one line naming the choices; anything else (a bug) keeps Hydra's full report. ``HYDRA_FULL_ERROR=1`` still
shows everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

#: Lines of Hydra's messages that say nothing a user can act on.
_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable HYDRA_FULL_ERROR", "See https")


def one_line(message: str) -> str:
    """Hydra's multi-line message as one line: what is wrong, then the choices it offers."""
    lines = message.splitlines()
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    choices = [line.strip() for line in lines if line.startswith("\t")]
    said = [
        line.strip() for line in lines if line.strip() and not line.startswith(("\t", " ")) and "Available" not in line
    ]
    said = [line for line in said if not line.startswith(_NOISE)]
    text = "; ".join(line.rstrip(".") for line in said[:2])
    return f"{text}; choose one of: {', '.join(choices)}" if choices else text


def _reraise(error: BaseException) -> None:
    raise error


def one_line_config_errors() -> None:
    """Make Hydra report its compact (user) errors in one line with exit 2 (called by ``run.py`` before Hydra)."""
    from hydra._internal import utils
    from hydra.errors import CompactHydraException

    from experiments.errors import UserError

    original: Callable[[Any], Any] = utils.run_and_report
    if getattr(original, "one_line", False):
        return

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except CompactHydraException as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {one_line(str(error))}", file=sys.stderr)
            sys.exit(2)
        except UserError as error:  # raised by a sweeper (a search's settings): already one line
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except Exception as error:  # a bug: Hydra's full report of this same error (the job is not run twice)
            return original(partial(_reraise, error))

    run_and_report.one_line = True  # type: ignore[attr-defined]
    utils.run_and_report = run_and_report
