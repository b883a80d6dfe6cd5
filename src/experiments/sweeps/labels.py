"""How a knob's value is shown in a run name, a report row and a plot label: a float to 3 significant digits.

Display only: config values, tracked params and the sweep's job folders (named by their overrides and a digest of
them) keep the value as given, so ``learning_rate=1.2184186502221756e-05`` still reproduces the run.
"""

from __future__ import annotations

import re

#: A float as Hydra or a sampler writes it: a decimal point or an exponent (an integer stays as typed).
FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")


def shown(value: str) -> str:
    """``1.22e-05`` for ``1.2184186502221756e-05``, ``0.333`` for ``0.3333333``; any other text unchanged."""
    return f"{float(value):.3g}" if FLOAT.fullmatch(value.strip()) else value


def shown_knob(line: str) -> str:
    """``learning_rate=1.22e-05`` for ``learning_rate=1.2184186502221756e-05`` (a ``key=value`` line)."""
    key, equals, value = line.partition("=")
    return f"{key}{equals}{shown(value)}" if equals else line
