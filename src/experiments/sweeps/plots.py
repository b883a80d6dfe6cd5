"""The sweep report's figures (PNG), one function each: the metric against k per miner, the learning curve (the
metric against train examples per label), a bar per configuration, the winner's training loss. ``write_plots``
draws those the rows support. The winner (the first row) is marked wherever it is drawn, and legends sit outside
the axes, where they cover no bar or point."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import run_folder
from experiments.metrics import metric_key
from experiments.records.run import Estimate
from experiments.sweeps.rows import Row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def _k(row: Row) -> float | None:
    value = row.job.overrides.get("k")
    if value is None:
        config = run_folder.read_config(row.job.folder)
        value = config.k if config is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _means(estimates: list[Estimate]) -> list[float]:
    return [estimate.mean for estimate in estimates]


def _bars(estimates: list[Estimate]) -> list[list[float]]:
    """Matplotlib's asymmetric ``yerr``: each interval's distance below and above its mean."""
    return [[e.mean - e.ci_low for e in estimates], [e.ci_high - e.mean for e in estimates]]


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, bbox_inches="tight")  # "tight": the legend outside the axes is kept whole
    _pyplot().close(figure)
    return path


def _legend_outside(axes: Any, *args: Any) -> None:
    """The legend to the right of the axes: inside, it would hide a bar or a point whatever corner it took."""
    axes.legend(*args, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def write_plots(sweep_dir: Path, rows: list[Row], metric: str) -> list[Path]:
    """Write the figures that the rows support into ``sweep_dir``; returns their paths."""
    drawn = [
        plot_metric_vs_k(sweep_dir, rows, metric),
        plot_learning_curve(sweep_dir, rows, metric),
        plot_per_configuration(sweep_dir, rows, metric),
        plot_winner_loss(sweep_dir, rows),
    ]
    return [path for path in drawn if path is not None]


def plot_metric_vs_k(sweep_dir: Path, rows: list[Row], metric: str) -> Path | None:
    """The metric against k, one line per miner / reranker, with intervals; None when k does not vary."""
    figure = metric_vs_k_figure(rows, metric)
    return None if figure is None else _save(figure, sweep_dir / f"{metric_key(metric)}_vs_k.png")


def metric_vs_k_figure(rows: list[Row], metric: str) -> Figure | None:
    """``plot_metric_vs_k``'s figure, the winner's point starred; None when k does not vary."""
    plt = _pyplot()
    by_miner: dict[str, list[tuple[float, Row]]] = defaultdict(list)
    for row in rows:
        k = _k(row)
        if k is not None:
            by_miner[f"{row.choices.get('miner', '?')} / {row.choices.get('reranker', '?')}"].append((k, row))
    if len({k for points in by_miner.values() for k, _ in points}) <= 1:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    # Each series is nudged sideways a little, so that overlapping intervals stay readable.
    all_ks = [k for points in by_miner.values() for k, _ in points]
    spread = 0.03 * (max(all_ks) - min(all_ks))
    for index, (name, points) in enumerate(sorted(by_miner.items())):
        points.sort(key=lambda point: point[0])
        ks = [k + (index - (len(by_miner) - 1) / 2) * spread for k, _ in points]
        estimates = [row.metrics[metric] for _, row in points]
        axes.errorbar(ks, _means(estimates), yerr=_bars(estimates), marker="o", capsize=3, label=name)
        for x, (_, row) in zip(ks, points, strict=True):
            if row is rows[0]:
                star = {"marker": "*", "markersize": 16, "color": "gold", "markeredgecolor": "black", "zorder": 5}
                axes.plot([x], [row.metrics[metric].mean], linestyle="none", label=f"winner: {row.label}", **star)
    axes.set_xticks(sorted(set(all_ks)))
    axes.set_xlabel("k (negatives per item)")
    axes.set_ylabel(f"{metric} (eval, 95% CI)")
    axes.set_title(f"{metric} against k, per miner / reranker")
    _legend_outside(axes)
    axes.grid(alpha=0.3)
    return figure


def examples_per_label(row: Row) -> float:
    """Train examples per category of the row's run (``dataset.shots`` on Banking77, for example)."""
    dataset = row.record.dataset
    return dataset.train / max(dataset.categories, 1)


BASELINE_SERIES = "embedding baseline (zero-shot)"


def learning_curve_series(rows: list[Row], metric: str) -> dict[str, list[tuple[float, Estimate]]]:
    """The learning curve's lines: name → (train examples per label, metric) points, one point per size in each line;
    empty when there is no curve.

    A curve needs runs of one data set scored on the same eval queries whose train size varies: runs of other data
    sets (``-m dataset=synthetic,banking77``) or other eval splits (``dataset.split=merchant,random``) differ in size
    too, but a line through them would not say what more labels buy. A line is a miner / reranker and every other
    swept knob (``dataset.seed=1``) except the one that sets the size (each of its values one size, and back).
    """
    if len({(row.record.dataset.name, tuple(row.queries)) for row in rows}) != 1:
        return {}
    sizes = {examples_per_label(row) for row in rows}
    if len(sizes) <= 1:
        return {}
    named = _sizing_knobs(rows) | {"miner", "reranker"}  # not in a line's name: its size, or said already
    series: dict[str, list[tuple[float, Estimate]]] = defaultdict(list)
    baseline: dict[float, Estimate] = {}
    for row in rows:
        size = examples_per_label(row)
        others = [f"{key}={value}" for key, value in sorted(row.knobs.items()) if key not in named]
        name = f"{row.choices.get('miner', '?')} / {row.choices.get('reranker', '?')}"
        series[f"{name} ({','.join(others)})" if others else name].append((size, row.metrics[metric]))
        baseline[size] = row.record.metrics.baseline[metric]
    series[BASELINE_SERIES] = sorted(baseline.items())
    return {name: sorted(points, key=lambda point: point[0]) for name, points in series.items()}


def _sizing_knobs(rows: list[Row]) -> set[str]:
    """The swept knobs that set the train size: each value gives one size and each size comes from one value."""
    sizing = set()
    for key in {key for row in rows for key in row.knobs}:
        pairs = {(row.knobs.get(key), examples_per_label(row)) for row in rows}
        if len(pairs) == len({value for value, _ in pairs}) == len({size for _, size in pairs}):
            sizing.add(key)
    return sizing


def plot_learning_curve(sweep_dir: Path, rows: list[Row], metric: str) -> Path | None:
    """The metric against train examples per label, one line per miner / reranker and one for the embedding
    baseline, with intervals: how much more labelling would buy. None when the train size does not vary."""
    series = learning_curve_series(rows, metric)
    if not series:
        return None
    sizes = {size for points in series.values() for size, _ in points}
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in sorted(series.items()):
        estimates = [estimate for _, estimate in points]
        style = {"linestyle": "--", "color": "grey"} if name == BASELINE_SERIES else {}
        sizes_of = [size for size, _ in points]
        axes.errorbar(sizes_of, _means(estimates), yerr=_bars(estimates), marker="o", capsize=3, label=name, **style)
    axes.set_xscale("log")
    axes.minorticks_off()  # the log axis's minor labels ("6x10^0") would crowd the examples-per-label ticks
    axes.set_xticks(sorted(sizes), [f"{size:.3g}" for size in sorted(sizes)])
    axes.set_xlabel("train examples per label (log scale)")
    axes.set_ylabel(f"{metric} (eval, 95% CI)")
    axes.set_title(f"learning curve: {metric} against labelled examples per label")
    _legend_outside(axes)
    axes.grid(alpha=0.3)
    return _save(figure, sweep_dir / f"{metric_key(metric)}_learning_curve.png")


def plot_per_configuration(sweep_dir: Path, rows: list[Row], metric: str) -> Path:
    """One bar per configuration with its interval, coloured by reranker, the embedding baseline as a line."""
    return _save(per_configuration_figure(rows, metric), sweep_dir / f"{metric_key(metric)}_per_configuration.png")


WINNER_HATCH = "//"


def per_configuration_figure(rows: list[Row], metric: str) -> Figure:
    """``plot_per_configuration``'s figure: the winner's bar (the first) outlined, hatched and labelled."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 4), 4.5))
    rerankers = sorted({row.choices.get("reranker", "?") for row in rows})
    colours = {name: plt.get_cmap("tab10")(index % 10) for index, name in enumerate(rerankers)}
    positions = range(len(rows))
    estimates = [row.metrics[metric] for row in rows]
    bars = axes.bar(
        positions,
        _means(estimates),
        yerr=_bars(estimates),
        capsize=3,
        color=[colours[row.choices.get("reranker", "?")] for row in rows],
    )
    bars[0].set(edgecolor="black", linewidth=2, hatch=WINNER_HATCH)
    axes.annotate(
        "winner",
        (0, estimates[0].ci_high),
        xytext=(0, 3),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=8,
        fontweight="bold",
    )
    axes.margins(y=0.12)  # room above the tallest interval for the label
    baseline = rows[0].record.metrics.baseline[metric].mean
    line = axes.axhline(baseline, color="grey", linestyle="--")
    axes.set_xticks(list(positions), [row.label for row in rows], rotation=35, ha="right", fontsize=8)
    axes.set_ylabel(f"{metric} (eval, 95% CI)")
    axes.set_title(f"{metric} per configuration (best on the selection split first)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in rerankers]
    winner = plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", linewidth=2, hatch=WINNER_HATCH)
    labels = [*rerankers, f"winner: {rows[0].label}", f"baseline {baseline:.3f}"]
    _legend_outside(axes, [*handles, winner, line], labels)
    return figure


def plot_winner_loss(sweep_dir: Path, rows: list[Row]) -> Path | None:
    """The winner's (the first row's) training loss per optimiser step; None when it recorded none."""
    history = rows[0].training.loss_history if rows[0].training else []  # a reused model's stored curve
    if not history:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot([step for step, _ in history], [loss for _, loss in history], marker=".")
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("training loss")
    axes.set_title(f"training loss of the winner ({rows[0].label or rows[0].job.folder.name})")
    axes.grid(alpha=0.3)
    return _save(figure, sweep_dir / "winner_loss.png")
