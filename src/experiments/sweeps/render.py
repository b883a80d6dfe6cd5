"""A sweep report's two renderings from one template: ``report.md`` is ``templates/report.md.j2`` rendered, and
``report.html`` is that same markdown converted to HTML inside a page (``templates/report.html.j2``), so the two
cannot say different things. The HTML embeds its plots as ``data:`` URIs, so that it renders where relative links
do not resolve (MLflow's artifact viewer); the markdown links them relatively, beside it in the sweep folder.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from markdown_it import MarkdownIt

from experiments.secrets import redact


def sweep_name(sweep_dir: Path) -> str:
    """What a report calls its sweep: the folder's last two components (``2026-12-07/19-31-00`` under
    ``outputs/multirun``), never the machine's absolute path."""
    return "/".join(Path(sweep_dir).resolve().parts[-2:])


def relative(text: str, sweep_dir: Path) -> str:
    """``text`` with the sweep folder's absolute path dropped where it leads a path (a failure naming a job's file)."""
    # The resolved path first: the path as given may be a relative tail of it (outputs/multirun/...).
    for prefix in dict.fromkeys((str(Path(sweep_dir).resolve()), str(sweep_dir))):
        text = text.replace(prefix + "/", "")
    return text


def _cell(value: Any) -> str:
    """A markdown table cell: a ``|`` inside it would end the cell."""
    return str(value).replace("|", r"\|")


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("experiments.sweeps", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["cell"] = _cell
    return environment


@cache
def _markdown_parser() -> MarkdownIt:
    # Raw HTML in the text (a label, a failure's reason) is shown as text, never run as markup.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def markdown_to_html(markdown: str, images: Sequence[Path] = ()) -> str:
    """``markdown`` as HTML; an image linked by the file name of one of ``images`` is embedded as a data URI."""
    parser = _markdown_parser()
    embedded = {parser.normalizeLink(path.name): path for path in images}
    tokens = parser.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            source = child.attrGet("src")
            if child.type == "image" and isinstance(source, str) and source in embedded:
                child.attrSet("src", _data_uri(embedded[source]))
    return parser.renderer.render(tokens, parser.options, {})


def render(context: Mapping[str, Any], plots: Sequence[Path]) -> tuple[str, str]:
    """``(report.md, report.html)`` for a report's ``context`` (the variables ``report.md.j2`` names); ``plots`` are
    the PNG files the markdown links to and the HTML embeds. Secrets are redacted from the text, before the images
    go in."""
    environment = _environment()
    markdown = redact(environment.get_template("report.md.j2").render(**context, plots=list(plots)))
    body = markupsafe.Markup(markdown_to_html(markdown, plots))
    page = environment.get_template("report.html.j2").render(name=redact(str(context["name"])), body=body)
    return markdown, page
