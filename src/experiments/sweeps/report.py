"""The verdict of a sweep: one row per configuration, the winner, paired tests against it, plots.

``write_report(sweep_dir)`` reads only the job folders (``metrics.json``, ``per_query.jsonl``, ``.hydra/``), so
``python -m experiments.report <sweep folder>`` regenerates the same report without any tracker. The winner is the
row with the best ``metric`` on the *selection* split: the validation split carved from train when the runs report
one (``metrics.json["validation"]``), else the eval split, and the report says which (choosing on eval is test-set
tuning: its number is biased upward). Rows that tie on it are named as a tie and ordered by ``TIE_RULE``.

A job that reused a stored model (``fit.reused``) shows ``reused`` with the training time and loss history stored
with that model when it was trained (``sweeps.rows.training``), not the reuse's zero seconds.

``report.md`` and ``report.html`` are one template rendered twice (``sweeps.render``): the same sentences, caveats
and numbers, the sweep named by its folder's last two components, never its absolute path (``report.json`` keeps
that for code).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from experiments import run_folder
from experiments.errors import UserError
from experiments.files import write_atomic
from experiments.metrics import DEFAULT_METRIC, METRIC_NAMES
from experiments.records.sweep import SweepRecord, SweepRow, Tie
from experiments.sweeps.jobs import Job, sweep_jobs
from experiments.sweeps.plots import write_plots
from experiments.sweeps.render import relative, render, sweep_name
from experiments.sweeps.rows import Row, read_row, validation_score
from experiments.sweeps.search_plots import write_search_plots
from experiments.sweeps.stats import holm, paired_delta, sign_flip_p_value

ALPHA = 0.05
#: How rows that tie on the selection metric are ordered; stated in the report. Never an eval number.
TIE_RULE = "the shorter stored training time first, then the configuration name"
#: Selection values closer than this are a tie (they differ only by floating-point noise).
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SweepReport:
    sweep_dir: Path
    metric: str
    rows: list[Row]
    winner: Row
    selection_split: str
    markdown_path: Path
    html_path: Path
    plots: list[Path]
    #: With replicates that all chose on validation: how many seeds' validation scores each row's value averages.
    selection_seeds: int | None = None
    #: ``(job label, reason)`` of every job that did not complete, or whose record could not be read.
    failed: tuple[tuple[str, str], ...] = ()
    #: ``report.json``'s record, as the trackers receive it at the sweep's end.
    record: SweepRecord | None = None

    @property
    def winner_value(self) -> float:
        return self.winner.selection_value

    @property
    def selection_where(self) -> str:
        return selection_where(self.selection_split, self.selection_seeds)


def selection_where(split: str, seeds: int | None) -> str:
    """``validation split (mean of 3 seeds)``, ``validation split`` or ``eval split``: what picked the winner."""
    return f"{split} split" + (f" (mean of {seeds} seeds)" if seeds else "")


def build_rows(jobs: list[Job], metric: str) -> tuple[list[Row], str, int | None]:
    """Rows for the completed jobs, best first by the selection metric; the name of the selection split; and, when
    every row's value is a mean of its seeds' validation scores, how many seeds (else None)."""
    completed = [job for job in jobs if job.status == "completed"]
    if not completed:
        raise UserError("no completed job in this sweep folder: nothing to report.")
    keys = list(dict.fromkeys(key for job in completed for key in job.overrides))
    swept = [key for key in keys if len({job.overrides.get(key) for job in completed}) > 1]
    # Every row is chosen on the same split: validation only when every run reports it.
    on_validation = all(validation_score(job, metric) is not None for job in completed)
    # Runs whose eval split is itself a validation split of train (dataset.evaluate_on=validation) choose there.
    split = "validation" if on_validation or all(_evaluates_validation(job.folder) for job in completed) else "eval"
    seeds = {len(job.record.replicates.seeds) for job in completed if job.record and job.record.replicates}
    over_seeds = on_validation and all(
        job.record and job.record.replicates and job.record.replicates.validation for job in completed
    )
    # Sweeps mixing replicate counts say the smallest: every row averages at least that many seeds.
    n_seeds = min(seeds) if over_seeds and seeds else None
    rows = [read_row(job, swept, metric, on_validation) for job in completed]
    rows.sort(key=lambda row: -row.selection_value)
    rows = _break_ties(rows)
    best = rows[0]
    compared: list[Row] = []
    for row in rows[1:]:
        same_queries = row.queries == best.queries or (bool(row.eval_set) and row.eval_set == best.eval_set)
        vs_best = paired_delta(row.per_query[metric], best.per_query[metric]) if same_queries else None
        p = sign_flip_p_value(row.per_query[metric], best.per_query[metric]) if same_queries else None
        compared.append(Row(**{**row.__dict__, "vs_best": vs_best, "p_value": p}))
    tested = [row for row in compared if row.p_value is not None]
    adjusted = iter(holm([row.p_value for row in tested if row.p_value is not None]))
    final = [best] + [
        Row(**{**row.__dict__, "p_adjusted": next(adjusted)}) if row.p_value is not None else row for row in compared
    ]
    return final, split, n_seeds


def _evaluates_validation(folder: Path) -> bool:
    """Whether the job's eval split was a validation split carved from train (``dataset.evaluate_on=validation``)."""
    config = run_folder.read_config(folder)
    return config is not None and config.evaluates_validation()


def ties(rows: list[Row]) -> list[list[Row]]:
    """Groups of two or more rows (sorted best first) whose selection values are equal."""
    groups: list[list[Row]] = []
    for row in rows:
        if groups and abs(groups[-1][0].selection_value - row.selection_value) <= TIE_TOLERANCE:
            groups[-1].append(row)
        else:
            groups.append([row])
    return [group for group in groups if len(group) > 1]


def _break_ties(rows: list[Row]) -> list[Row]:
    """Rows sorted best first, each tied group ordered by ``TIE_RULE`` (unknown training time counts as longest)."""

    def rule(row: Row) -> tuple[float, str]:
        training = row.training
        seconds = training.seconds if training is not None else 0.0
        return (float("inf") if seconds is None else seconds, row.label)

    tied = {id(row): group for group in ties(rows) for row in group}
    ordered: list[Row] = []
    for row in rows:
        group = tied.get(id(row))
        if group is None:
            ordered.append(row)
        elif row is group[0]:
            ordered.extend(sorted(group, key=rule))
    return ordered


def _over_seeds(row: Row, metric: str) -> str:
    """``0.787 ± 0.014 (3)``: the row's eval ``metric`` over its replicate seeds, or — without replicates."""
    replicates = row.record.replicates
    if replicates is None:
        return "—"
    stat = replicates.stat(metric)
    return f"{stat.mean:.3f} ± {stat.sd:.3f} ({replicates.n})"


def _table(rows: list[Row], metric: str, where: str) -> list[list[str]]:
    seeded = any(row.record.replicates is not None for row in rows)
    header = [
        "configuration",
        f"{metric} on {where} (selection)",
        *METRIC_NAMES,
        *([f"{metric} over seeds (mean ± sd, n)"] if seeded else []),
        f"Δ {metric} vs baseline",
        f"Δ {metric} vs best (paired)",
        "p (Holm)",
        "train s",
        "fine-tune id",
    ]
    table = [header]
    for rank, row in enumerate(rows):
        if rank == 0:
            versus, p_text = "— (best)", "—"
        elif row.vs_best is None:
            versus, p_text = "n/a (other eval queries)", "n/a"
        else:
            mark = " *" if row.p_adjusted is not None and row.p_adjusted < ALPHA else ""
            versus, p_text = row.vs_best.cell(signed=True), f"{row.p_adjusted:.3f}{mark}"
        table.append(
            [
                row.label,
                f"{row.selection_value:.3f}",
                *(row.metrics[name].cell() for name in METRIC_NAMES),
                *([_over_seeds(row, metric)] if seeded else []),
                row.delta_baseline[metric].cell(signed=True),
                versus,
                p_text,
                row.training.cell if row.training else "—",
                str(row.record.finetune_id or "—"),
            ]
        )
    return table


def _context(sweep_dir: Path, report: dict[str, Any], table: list[list[str]] | None) -> dict[str, Any]:
    """What ``templates/report.md.j2`` names, from a report's data: the sweep by name (no machine path), and the
    failures' reasons with paths relative to the sweep folder."""
    winner = report.get("winner")
    return {
        "name": sweep_name(sweep_dir),
        "winner": winner,
        "metric": report.get("metric"),
        "winner_value": report.get("winner_value"),
        "where": selection_where(report["selection_split"], report.get("selection_seeds")) if winner else None,
        "split": report.get("selection_split"),
        "tie": tie_sentence(report) if report.get("ties") else None,
        "n_queries": report.get("n_queries"),
        "alpha": ALPHA,
        "table": table,
        "said": report.get("said"),
        "failed": [(label, relative(reason, sweep_dir)) for label, reason in report["failed"]],
    }


def _write_renderings(sweep_dir: Path, context: dict[str, Any], plots: list[Path]) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` (the same template, the same words) into ``sweep_dir``."""
    markdown, page = render(context, plots)
    markdown_path, html_path = sweep_dir / "report.md", sweep_dir / "report.html"
    write_atomic(markdown_path, markdown)
    write_atomic(html_path, page)
    return markdown_path, html_path


def tie_sentence(report: dict[str, Any]) -> str:
    """``Tie on mrr@1 (validation): a, b at 0.733; ordered by <rule>.`` for each tied group."""
    parts = [f"{', '.join(group['configurations'])} at {group['value']:.3f}" for group in report["ties"]]
    seeds = f", mean of {report.get('selection_seeds')} seeds" if report.get("selection_seeds") else ""
    where = f"{report['metric']} ({report['selection_split']}{seeds})"
    return f"Tie on {where}: {'; '.join(parts)}; ordered by {report['tie_rule']}."


def write_report(sweep_dir: Path, metric: str = DEFAULT_METRIC) -> SweepReport:
    """Write ``report.md``, ``report.html``, ``report.json`` and the PNG plots into ``sweep_dir``."""

    if metric not in METRIC_NAMES:
        raise UserError(f"optimized_metric={metric!r} is not one of {list(METRIC_NAMES)}.")
    sweep_dir = Path(sweep_dir)
    jobs = [readable(job) for job in sweep_jobs(sweep_dir)]
    rows, split, n_seeds = build_rows(jobs, metric)
    plots = write_plots(sweep_dir, rows, metric)
    plots = [*plots, *write_search_plots(sweep_dir)]
    winner = rows[0]
    record = SweepRecord(
        sweep_dir=str(sweep_dir),
        metric=metric,
        selection_split=split,
        selection_seeds=n_seeds,
        winner=winner.label,
        winner_folder=str(winner.job.folder),
        winner_value=winner.selection_value,
        winner_metrics={name: winner.metrics[name] for name in METRIC_NAMES},
        winner_overrides=winner.job.overrides,
        winner_choices=winner.choices,
        ties=[Tie(value=group[0].selection_value, configurations=[row.label for row in group]) for group in ties(rows)],
        tie_rule=TIE_RULE,
        n_queries=len(winner.queries),
        rows=[
            SweepRow(
                configuration=row.label,
                folder=str(row.job.folder),
                selection_value=row.selection_value,
                metrics={name: row.metrics[name] for name in METRIC_NAMES},
                delta_vs_best=row.vs_best,
                p_value=row.p_value,
                p_holm=row.p_adjusted,
                finetune_id=row.record.finetune_id,
                reused=bool(row.training and row.training.reused),
                train_seconds=row.training.seconds if row.training else None,
            )
            for row in rows
        ],
        failed=failures(jobs),
        plots=[str(path) for path in plots],
    )
    table = _table(rows, metric, selection_where(split, n_seeds))
    markdown_path, html_path = _write_renderings(sweep_dir, _context(sweep_dir, record.model_dump(), table), plots)
    run_folder.write_report(sweep_dir, record)
    return SweepReport(
        sweep_dir, metric, rows, winner, split, markdown_path, html_path, plots, n_seeds, tuple(failures(jobs)), record
    )


def readable(job: Job) -> Job:
    """``job``, or when its per-query record cannot be read, the job as failed with the reason naming the file."""
    if job.status != "completed":
        return job
    try:
        run_folder.read_queries(job.folder)
    except UserError as error:
        return replace(job, status="failed", record=None, reason=str(error))
    return job


def failures(jobs: list[Job]) -> list[tuple[str, str]]:
    """``(label, reason)`` of each job that did not complete."""
    return [(job.label, job.reason or "did not finish (killed?)") for job in jobs if job.status != "completed"]


def write_failure_report(sweep_dir: Path) -> Path:
    """``report.md`` and ``report.html`` for a sweep none of whose jobs completed: which failed and why.

    No ``report.json``: that file names a winner, and there is none.
    """
    jobs = [readable(job) for job in sweep_jobs(sweep_dir)]
    said = f"None of its {len(jobs)} job(s) completed." if jobs else "It left no job folder."
    context = _context(sweep_dir, {"selection_split": None, "said": said, "failed": failures(jobs)}, None)
    markdown_path, _ = _write_renderings(sweep_dir, context, [])
    return markdown_path


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.report <sweep folder> [--metric mrr@1]``: regenerate a sweep's report."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (outputs/multirun/<date>/<time>)")
    parser.add_argument(
        "--metric", default=DEFAULT_METRIC, choices=list(METRIC_NAMES), help="the metric that picks the winner"
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"error: {args.sweep_dir} is not a folder: pass a sweep folder such as outputs/multirun/<date>/<time>.",
            file=sys.stderr,
        )
        return 2
    try:
        report = write_report(args.sweep_dir, args.metric)
    except UserError as error:
        print(f"error: {args.sweep_dir}: {error}", file=sys.stderr)
        return 2
    print(f"winner: {report.winner.label} ({report.metric} {report.winner_value:.3f} on the {report.selection_where})")
    print(f"report: {report.markdown_path}")
    return 0
