"""The sweep report's two renderings (one template), its embedded images, its heading, and the winner in its plots."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_sweeps import N_QUERIES, fake_job

from experiments.errors import UserError
from experiments.sweeps.jobs import record_failure
from experiments.sweeps.report import SweepReport, write_failure_report, write_report

NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]*)\)")
#: Tags that end a block of text: a space between theirs and the next text, none after an inline tag (``<code>``).
BLOCKS = {"p", "li", "td", "th", "tr", "h1", "h2", "blockquote", "table", "ul", "title"}


class _Text(HTMLParser):
    """The text a reader of an HTML page sees (entities decoded), less the page's style sheet."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.images: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._style = tag == "style"
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        self._style = False
        if tag in BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._style:
            self.parts.append(data)


def page_text(page: str) -> tuple[str, list[str]]:
    """``(text, image sources)`` of an HTML page; runs of whitespace as one space."""
    parser = _Text()
    parser.feed(page)
    return " ".join("".join(parser.parts).split()), parser.images


def markdown_pieces(markdown: str) -> list[str]:
    """Every sentence-bearing piece of a markdown report, its markup dropped: headings, paragraphs, quoted caveats,
    list items, and each table cell. Image lines are left out (the HTML embeds them; ``images`` checks those)."""
    pieces: list[str] = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line or IMAGE.fullmatch(line) or re.fullmatch(r"[|\s-]+", line):
            continue
        line = re.sub(r"^(#+|>|-)\s+", "", line).replace("**", "").replace("`", "")
        if line.startswith("|"):
            pieces += [cell.strip().replace(r"\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        else:
            pieces.append(line)
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep chosen on eval (no validation split) with a tie at the top, Holm-adjusted p values, a job that
    failed, one whose record is unreadable (its reason names a file under the sweep folder), and a label that
    needs escaping in both renderings."""
    folder = tmp_path / "multirun" / "2026-12-07" / "19-31-00"
    rng = np.random.default_rng(0)
    strong = (rng.random(N_QUERIES) < 0.9).astype(float)
    fake_job(folder, "kmeans", 4, list(strong), train_seconds=20.0)
    fake_job(folder, "random", 4, list(strong), train_seconds=5.0)  # tied, trained faster: first by the rule
    fake_job(folder, "kmeans", 2, list(np.where(np.arange(N_QUERIES) < 2, 0.0, strong)))
    fake_job(folder, "a|<b>", 2, list(np.where(np.arange(N_QUERIES) < 25, 0.0, strong)))
    failed = folder / "k=0,miner=random"
    (failed / ".hydra").mkdir(parents=True)
    record_failure(failed, UserError("k=0: the number of negatives per item must be at least 1"), user_error=True)
    broken = fake_job(folder, "cosine", 3, list(strong))
    (broken / "per_query.jsonl").write_text('{"query": ')
    return folder


def test_report_html_says_every_sentence_and_number_of_report_md(sweep: Path) -> None:
    report = write_report(sweep, metric="mrr@1")
    assert report.selection_split == "eval" and [row.label for row in report.rows[:2]] == [
        "k=4,miner=random",
        "k=4,miner=kmeans",
    ]
    assert any(row.p_adjusted is not None and row.p_adjusted < 0.05 for row in report.rows)  # a starred p
    markdown = report.markdown_path.read_text()
    text, _ = page_text(report.html_path.read_text())
    # The caveats this sweep calls for, in the markdown, so that the parity below covers them.
    caveats = [
        "biased upward (test-set tuning)",
        f"{N_QUERIES} eval queries",
        "Holm-corrected over the rows (* = p < 0.05)",
        "Tie on mrr@1 (eval): k=4,miner=random, k=4,miner=kmeans at",
        "ordered by the shorter stored training time first",
        "k=0: the number of negatives per item must be at least 1",
        "Failed jobs",
        "k=2,miner=a|<b>",
    ]
    for caveat in caveats:
        assert caveat in " ".join(markdown.split()).replace(r"\|", "|"), caveat
    pieces = markdown_pieces(markdown)
    assert len(pieces) > 40
    missing = [piece for piece in pieces if piece not in text]
    assert not missing, missing
    without_images = IMAGE.sub("", markdown)
    numbers, shown = Counter(NUMBER.findall(without_images)), Counter(NUMBER.findall(text))
    assert not numbers - shown, numbers - shown  # every number, as often as the markdown says it
    assert "<b>" not in report.html_path.read_text()  # a label is text, never markup


def test_report_html_embeds_its_plots_and_report_md_links_them(sweep: Path) -> None:
    report = write_report(sweep, metric="mrr@1")
    _, sources = page_text(report.html_path.read_text())
    assert len(report.plots) >= 3 and len(sources) == len(report.plots)
    for source, path in zip(sources, report.plots, strict=True):
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix) and base64.b64decode(source[len(prefix) :]) == path.read_bytes()
    assert IMAGE.findall(report.markdown_path.read_text()) == [path.name for path in report.plots]


def test_a_plot_added_to_the_list_is_embedded_too(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever PNG ``write_plots`` returns (a search's Optuna plots, say) reaches both renderings."""
    from experiments.sweeps import report as module

    drawn = module.write_plots

    def more(sweep_dir: Path, rows: list, metric: str) -> list[Path]:
        extra = sweep_dir / "extra.png"
        extra.write_bytes(b"\x89PNG extra")
        return [*drawn(sweep_dir, rows, metric), extra]

    monkeypatch.setattr(module, "write_plots", more)
    report = write_report(sweep, metric="mrr@1")
    assert "](extra.png)" in report.markdown_path.read_text()
    _, sources = page_text(report.html_path.read_text())
    assert "data:image/png;base64," + base64.b64encode(b"\x89PNG extra").decode() in sources


def heading_and_paths(report: SweepReport | Path, tmp_path: Path) -> None:
    markdown_path = report.markdown_path if isinstance(report, SweepReport) else report
    markdown = markdown_path.read_text()
    page = markdown_path.with_name("report.html").read_text()
    assert markdown.splitlines()[0] == "# Sweep report: 2026-12-07/19-31-00"
    assert "<h1>Sweep report: 2026-12-07/19-31-00</h1>" in page
    assert str(tmp_path) not in markdown and str(tmp_path) not in page  # no machine path in either


def test_the_reports_name_the_sweep_never_the_machine_path(sweep: Path, tmp_path: Path) -> None:
    report = write_report(sweep, metric="mrr@1")
    heading_and_paths(report, tmp_path)
    assert "k=3,miner=cosine/per_query.jsonl" in report.markdown_path.read_text()  # relative, still said
    saved = json.loads((sweep / "report.json").read_text())
    assert saved["sweep_dir"] == str(sweep)  # the machine-readable record keeps where it was


def test_a_failure_report_comes_from_the_same_template(sweep: Path, tmp_path: Path) -> None:
    for folder in sweep.iterdir():
        if (folder / "metrics.json").is_file() and folder.name != "k=3,miner=cosine":
            (folder / "metrics.json").unlink()
    path = write_failure_report(sweep)
    heading_and_paths(path, tmp_path)
    markdown = path.read_text()
    text, _ = page_text(path.with_name("report.html").read_text())
    assert "No winner." in markdown and "## Failed jobs" in markdown
    assert [piece for piece in markdown_pieces(markdown) if piece not in text] == []


def test_the_winner_is_marked_and_no_legend_covers_a_bar(sweep: Path) -> None:
    from experiments.sweeps.plots import WINNER_HATCH, metric_vs_k_figure, per_configuration_figure

    report = write_report(sweep, metric="mrr@1")
    figure = per_configuration_figure(report.rows, "mrr@1")
    figure.canvas.draw()
    [axes] = figure.axes
    bars = [patch for patch in axes.patches if patch.get_width() > 0]
    assert len(bars) == len(report.rows)
    assert [bar.get_hatch() for bar in bars] == [WINNER_HATCH] + [None] * (len(bars) - 1)
    [label] = [text for text in axes.texts if text.get_text() == "winner"]
    assert label.xy[0] == pytest.approx(bars[0].get_x() + bars[0].get_width() / 2)
    legend = axes.get_legend()
    assert "winner: k=4,miner=random" in [text.get_text() for text in legend.get_texts()]
    box = legend.get_window_extent()
    assert not any(box.overlaps(bar.get_window_extent()) for bar in bars)
    assert not box.overlaps(axes.get_window_extent())  # outside the axes: it can hide nothing drawn there

    k_figure = metric_vs_k_figure(report.rows, "mrr@1")
    assert k_figure is not None
    [k_axes] = k_figure.axes
    [star] = [line for line in k_axes.lines if line.get_label().startswith("winner: ")]
    assert star.get_label() == f"winner: {report.winner.label}" and star.get_marker() == "*"
    assert star.get_ydata()[0] == pytest.approx(report.winner.metrics["mrr@1"].mean)
    k_figure.canvas.draw()
    assert not k_axes.get_legend().get_window_extent().overlaps(k_axes.get_window_extent())


def test_every_template_ships_in_the_wheel() -> None:
    """``pyproject.toml``'s package data covers each file of the templates folder (a wheel without them could not
    write a report)."""
    import fnmatch
    import tomllib

    import experiments.sweeps

    root = Path(__file__).parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = Path(experiments.sweeps.__file__).parent
    templates = [path.relative_to(package).as_posix() for path in (package / "templates").iterdir()]
    assert templates and all(
        any(fnmatch.fnmatch(name, glob) for glob in globs["experiments.sweeps"]) for name in templates
    )


def test_a_reason_names_files_relative_to_the_sweep_folder_given_either_way(tmp_path, monkeypatch) -> None:
    from experiments.sweeps.render import relative

    sweep = tmp_path / "outputs" / "multirun" / "d" / "t"
    monkeypatch.chdir(tmp_path)
    reason = f"{sweep}/k=2/per_query.jsonl:1: bad"
    assert relative(reason, Path("outputs/multirun/d/t")) == "k=2/per_query.jsonl:1: bad"
    assert relative(reason, sweep) == "k=2/per_query.jsonl:1: bad"


def test_runs_evaluated_on_a_validation_split_of_train_choose_on_validation(tmp_path: Path) -> None:
    """A grid run with dataset.evaluate_on=validation scores left-out train queries: its winner is chosen on
    validation (registrable, no test-set caveat); one job scored on test makes the whole sweep's choice eval."""
    folder = tmp_path / "multirun" / "2026-12-07" / "20-00-00"
    rng = np.random.default_rng(1)
    strong = list((rng.random(N_QUERIES) < 0.9).astype(float))
    weak = [0.0, 0.0, 0.0, *strong[3:]]
    jobs = [fake_job(folder, "kmeans", 4, strong), fake_job(folder, "random", 4, weak)]
    for job in jobs:
        config = json.loads((job / "config.json").read_text())
        config["dataset"] = {"_target_": "experiments.datasets.banking77.Banking77", "evaluate_on": "validation"}
        (job / "config.json").write_text(json.dumps(config))
    report = write_report(folder)
    assert report.selection_split == "validation"
    assert "test-set tuning" not in report.markdown_path.read_text()
    config["dataset"]["evaluate_on"] = "test"
    (jobs[-1] / "config.json").write_text(json.dumps(config))
    assert write_report(folder).selection_split == "eval"
