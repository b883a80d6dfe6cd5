"""A search's own figures (``hparams_search=optuna``): Optuna's optimisation history and parameter importances.

``write_search_plots(sweep_dir)`` finds the study the sweeper kept for the sweep folder (its ``optuna.db``, else the
storage and name the sweeper noted in ``search.json``) and draws them with ``optuna.visualization.matplotlib``.
A grid sweep, a study that cannot be opened, or Optuna not installed gives no figure; importances need two
completed trials, a knob that varies and a score that varies, else that figure is left out. The values drawn are
those Optuna was told: the trials' validation scores (a broken tie moves one by a float step, invisible at any
scale).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Where the sweeper keeps its study by default (``conf/hparams_search/optuna.yaml``) and what it notes about it.
STUDY_DATABASE = "optuna.db"
STUDY_FILE = "search.json"
DPI = 110


def read_note(sweep_dir: Path) -> dict[str, Any]:
    """What the sweeper noted about its study (``search.json``), or {} when there is no readable note."""
    try:
        note = json.loads((sweep_dir / STUDY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def load_study(sweep_dir: Path, note: dict[str, Any]) -> Any | None:
    """The sweep folder's study, or None (a grid sweep, a storage with its credentials redacted, or one that
    cannot be opened)."""
    database = sweep_dir / STUDY_DATABASE
    if not note and not database.is_file():
        return None
    try:
        import optuna
    except ImportError:
        return None
    # The folder's own database first: it is still there when the sweep folder was moved.
    storage = f"sqlite:///{database}" if database.is_file() else str(note.get("storage") or "")
    if not storage or "***" in storage:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=note.get("study_name"), storage=storage)
    except Exception as error:  # a foreign or corrupt file: the report goes on without these figures
        log.warning("%s: no search plots, the study cannot be opened: %s", sweep_dir, error)
        return None


def write_search_plots(sweep_dir: Path) -> list[Path]:
    """Write ``search_history.png`` and ``search_importance.png`` into ``sweep_dir``; returns those written."""
    sweep_dir = Path(sweep_dir)
    note = read_note(sweep_dir)
    study = load_study(sweep_dir, note)
    if study is None:
        return []
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return []
    from optuna.visualization import matplotlib as optuna_plots

    target = str(note.get("objective") or "Objective Value")  # "validation mrr@1"
    written = [_draw(sweep_dir / "search_history.png", optuna_plots.plot_optimization_history, study, target)]
    varying = {key for key in complete[0].params if len({repr(t.params.get(key)) for t in complete}) > 1}
    # Importance explains how the score varies: with one score (a broken tie is a float step) there is nothing to.
    scores = {round(float(t.value), 9) for t in complete}
    if len(complete) >= 2 and varying and len(scores) > 1:
        written.append(_draw(sweep_dir / "search_importance.png", optuna_plots.plot_param_importances, study, target))
    return [path for path in written if path is not None]


def _draw(path: Path, plot: Any, study: Any, target: str) -> Path | None:
    """One Optuna figure saved as PNG; None (and a log line) when Optuna cannot draw it for this study."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Optuna's plots switch the global style (ggplot); keep it to these figures.
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend of optuna.visualization is "experimental"
        try:
            axes = plot(study, target_name=target)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            log.warning("%s: not drawn: %s", path.name, error)
            return None
        figure = axes.figure
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(figure)
    return path
