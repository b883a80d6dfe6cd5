"""``python -m experiments.report <sweep folder>``: regenerate a sweep's comparison report (``sweeps.report``)."""

from __future__ import annotations

import sys

from experiments.sweeps.report import main

if __name__ == "__main__":
    sys.exit(main())
