"""The comparison as a table: ``table.md`` in the comparison folder, and the same rows on the console (rich)."""

from __future__ import annotations

from experiments.metrics import METRIC_NAMES
from experiments.peers.results import Comparison


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def columns(comparison: Comparison) -> list[str]:
    """The metric columns: the optimized metric first, then the project's table order."""
    return [comparison.metric, *(name for name in METRIC_NAMES if name != comparison.metric)]


def rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The header and one row per method: the project run (when compared with one), then each peer."""
    metrics, project = columns(comparison), comparison.project
    header = ["method", *(f"{name} [95% CI]" for name in metrics), "fit s"]
    if project is not None:
        header += ["fit × project", f"Δ {comparison.metric} project − peer [95% CI]", "p (Holm)"]
    table: list[list[str]] = []
    project_seconds = project.fit_seconds if project is not None else None
    if project is not None:
        cells = [project.record.metrics.reranker[name].cell() for name in metrics]
        table.append([f"project ({project.folder.name})", *cells, _seconds(project_seconds), "1", "—", "—"])
    for index, peer in enumerate(comparison.peers):
        seconds = peer.fit.seconds if peer.fit is not None else 0.0
        row = [f"peer:{peer.name}", *(peer.record.metrics.reranker[name].cell() for name in metrics), _seconds(seconds)]
        if project is not None:
            ratio = f"{seconds / project_seconds:.2g}" if project_seconds else "—"
            assert comparison.deltas is not None and comparison.p_values is not None
            delta = comparison.deltas[index]
            row += [
                ratio,
                delta.cell(signed=True),
                f"{comparison.p_values[index]:.3g}",
            ]
        table.append(row)
    return header, table


def notes(comparison: Comparison) -> list[str]:
    """What the numbers are: the data, the intervals, each peer's settings, what fit time counts."""
    queries = comparison.peers[0].record.metrics.n_queries if comparison.peers else 0
    lines = [
        f"{queries} eval queries of dataset={comparison.dataset}, seed {comparison.seed}; 95% bootstrap intervals.",
        "fit s: from train's frozen embeddings to a model ready to score (mining, pair generation and training; "
        "loading the base model and embedding train with the frozen embedder excluded)"
        + (
            "; the project's: its mine stage and its training (timings.mine_s + fit.train_seconds)."
            if comparison.project
            else "."
        ),
    ]
    if comparison.project is not None:
        lines.append(
            f"Δ: the project run minus the peer on the same eval queries (paired bootstrap 95% CI); p: sign-flip "
            f"test, Holm-adjusted over the {len(comparison.peers)} peers."
        )
    for peer in comparison.peers:
        settings = ", ".join(f"{key}={value}" for key, value in peer.settings.items()) or "nothing learnt"
        lines.append(f"peer:{peer.name}: {settings}")
    return lines


def markdown(comparison: Comparison) -> str:
    """``table.md``: a title, the table, the notes."""
    header, table = rows(comparison)
    lines = [f"# Peers on dataset={comparison.dataset}, seed {comparison.seed}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in table]
    lines.append("")
    lines += [f"- {note}" for note in notes(comparison)]
    return "\n".join(lines)


def print_console(comparison: Comparison) -> None:
    """The table and its notes on the console."""
    from rich.console import Console
    from rich.table import Table

    header, table = rows(comparison)
    rendered = Table(title=f"Peers on dataset={comparison.dataset}, seed {comparison.seed}")
    for name in header:
        rendered.add_column(name, no_wrap=True)
    for row in table:
        rendered.add_row(*row)
    # As wide as the table needs (a terminal wraps the long lines): cells are never cut short.
    console = Console(width=max(Console().width, 240))
    console.print(rendered)
    for note in notes(comparison):
        console.print(note, highlight=False)
