"""The docs' numbers for the pinned default, regenerated: ``make results``.

Usage: ``.venv/bin/python scripts/pinned_default.py [--outputs DIR] [--check | --render]``.

Runs the default (``python run.py``: the bundled set, seed 42) once, sends its logged model the README's serving
example (the body of the ``curl`` request, posted to MLflow's scoring server in this process: the app that
``mlflow models serve`` runs), records both in ``docs/pinned-default.json`` and rewrites every generated region of
README.md and docs/*.md from that record. A region is the text between ``<!-- make results: NAME -->`` and
``<!-- end make results: NAME -->``; edit its wording here, never there. ``--check`` runs and compares without
writing (exit 1 naming each region that differs); ``--render`` rewrites the regions from the record without running.
``tests/test_pinned_default.py`` checks the regions against the record, and (slow) the record against a fresh run.
Dated measurements (docs/results.md) are records of past runs and are not regenerated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from results_table import cell
from runs import ROOT, run_once

from experiments.run_folder import Estimate

README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"
RECORD = ROOT / "docs" / "pinned-default.json"
#: Where each generated region lives.
REGIONS = {"default-run": README, "serving-answer": README, "bundled-set": RESULTS, "default-table": RESULTS}
REGION = re.compile(r"<!-- make results: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- end make results: (?P=name) -->", re.S)
#: The JSON body of the README's ``curl ... -d '<body>'`` example.
CURL_BODY = re.compile(r"curl -s http://\S+/invocations .*?-d '(?P<body>\{.*?\})'", re.S)
TABLE_METRICS = ("recall@1", "recall@5", "mrr@1", "mrr@5")
#: Scores are shown rounded: the served float differs from the evaluation's in the 7th decimal (docs/serving.md).
SCORE_DECIMALS = 3


class Pinned(BaseModel):
    """``docs/pinned-default.json``: what the default run measured and what its served model answered."""

    model_config = ConfigDict(frozen=True)

    seed: int
    finetune_id: str
    finetune_set_digest: str
    eval_queries: int
    baseline: dict[str, Estimate]
    reranker: dict[str, Estimate]
    delta: dict[str, Estimate]
    request: dict[str, Any]
    answer: dict[str, Any]


def readme_request(text: str) -> dict[str, Any]:
    """The request of the README's ``curl`` example."""
    found = CURL_BODY.search(text)
    if found is None:
        sys.exit("README.md: no `curl -s http://.../invocations ... -d '{...}'` example to answer")
    body: dict[str, Any] = json.loads(found["body"])
    return body


def serve(reference: str, tracking_uri: str, request: dict[str, Any]) -> dict[str, Any]:
    """The JSON that ``mlflow models serve -m <reference>`` answers to ``request`` on ``/invocations``."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    from experiments.serving import mlflow_model

    mlflow_model.connect(tracking_uri)
    client = TestClient(scoring_server.init(mlflow_model.load(reference)))
    response = client.post("/invocations", content=json.dumps(request), headers={"Content-Type": "application/json"})
    if response.status_code != 200:
        sys.exit(f"the served model answered HTTP {response.status_code}: {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer


def measure(outputs: Path, request: dict[str, Any]) -> Pinned:
    """Run the default into ``outputs`` (a model stored there by content is reused) and ask its model ``request``."""
    _, record, folder = run_once(outputs, [])
    if record.finetune_id is None:
        sys.exit("the default run trained no model: the pinned default is a fine-tuned reranker")
    answer = serve(record.finetune_id, f"sqlite:///{outputs / 'mlflow.db'}", request)
    summary = record.metrics
    return Pinned(
        seed=json.loads((folder / "config.json").read_text(encoding="utf-8"))["seed"],
        finetune_id=record.finetune_id,
        finetune_set_digest=record.finetune_set.digest,
        eval_queries=summary.n_queries,
        baseline=summary.baseline,
        reranker=summary.reranker,
        delta=summary.delta,
        request=request,
        answer=answer,
    )


def rounded(answer: dict[str, Any]) -> str:
    """The answer as one JSON line, scores rounded to ``SCORE_DECIMALS``."""
    predictions = [
        {"categories": row["categories"], "scores": [round(score, SCORE_DECIMALS) for score in row["scores"]]}
        for row in answer["predictions"]
    ]
    return json.dumps({"predictions": predictions}, ensure_ascii=False)


def render(pinned: Pinned) -> dict[str, str]:
    """Each region's text (its lines, each ending in a newline) from the record."""
    ft, seed, base, ours = f"`{pinned.finetune_id}`", pinned.seed, pinned.baseline, pinned.reranker
    default_run = (
        f"On seed {seed} the default trains fine-tune {ft} and scores MRR@1 {cell(ours['mrr@1'])} against the\n"
        f"embedding baseline's {cell(base['mrr@1'])}, recall@5 {cell(ours['recall@5'])}, on the bundled set's\n"
        f"{pinned.eval_queries} eval transactions (`make results` reruns it and rewrites these lines).\n"
    )
    serving = (
        f"What the default run's model ({ft}, seed {seed}) answers to this request, scores rounded to "
        f"{SCORE_DECIMALS} decimals\n(`make results` asks it through MLflow's scoring server):\n\n"
        f"```json\n{rounded(pinned.answer)}\n```\n"
    )
    bundled = (
        f"`make results` reruns the default on the bundled set (seed {seed}) and writes these numbers: fine-tune id\n"
        f"{ft} (fine-tuning set digest `{pinned.finetune_set_digest[:16]}`), MRR@1 {cell(ours['mrr@1'])},\n"
        f"recall@5 {cell(ours['recall@5'])}; the same seed and data give the same model and metrics on another "
        "host.\n"
    )
    header = (
        "| metric | embedding baseline | fine-tuned reranker | delta (paired 95% CI) |\n| --- | --- | --- | --- |\n"
    )
    table = header + "".join(
        f"| {name} | {cell(base[name])} | {cell(ours[name])} | {cell(pinned.delta[name], '+')} |\n"
        for name in TABLE_METRICS
    )
    return {
        "default-run": default_run,
        "serving-answer": serving,
        "bundled-set": bundled,
        "default-table": table,
    }


def regions(text: str) -> dict[str, str]:
    """The generated regions of a document: name -> text between the markers."""
    return {found["name"]: found["body"] for found in REGION.finditer(text)}


def fill(text: str, bodies: dict[str, str]) -> str:
    """``text`` with each region named in ``bodies`` replaced by its body (the markers stay)."""

    def replace(found: re.Match[str]) -> str:
        name = found["name"]
        body = bodies.get(name, found["body"])
        return f"<!-- make results: {name} -->\n{body}<!-- end make results: {name} -->"

    return REGION.sub(replace, text)


def documents() -> dict[Path, str]:
    """The text of every file that holds a generated region."""
    return {path: path.read_text(encoding="utf-8") for path in sorted(set(REGIONS.values()))}


def stale(pinned: Pinned, texts: dict[Path, str]) -> list[str]:
    """``file: region`` for each generated region of ``texts`` that is missing or differs from what ``pinned``
    renders."""
    wanted = render(pinned)
    return [
        f"{path.relative_to(ROOT)}: {name}"
        for name, path in REGIONS.items()
        if regions(texts[path]).get(name) != wanted[name]
    ]


def write(pinned: Pinned) -> None:
    """Save the record and rewrite the regions from it; a region missing from its file stops before any write."""
    texts = documents()
    missing = [
        f"{path.relative_to(ROOT)}: {name}" for name, path in REGIONS.items() if name not in regions(texts[path])
    ]
    if missing:
        sys.exit("no region <!-- make results: NAME --> ... <!-- end make results: NAME --> for " + ", ".join(missing))
    RECORD.write_text(json.dumps(pinned.model_dump(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    bodies = render(pinned)
    for path, text in texts.items():
        path.write_text(fill(text, bodies), encoding="utf-8")


def read() -> Pinned:
    return Pinned.model_validate_json(RECORD.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, help="the run's outputs folder (default: a temporary one)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="run and compare; write nothing")
    mode.add_argument("--render", action="store_true", help="rewrite the regions from docs/pinned-default.json")
    args = parser.parse_args()
    if args.render:
        write(read())
        return
    request = readme_request(README.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="pinned-") as tmp:
        pinned = measure(args.outputs or Path(tmp), request)
    if args.check:
        differ = stale(pinned, documents())
        if differ:
            sys.exit("differs from what the code prints (rerun `make results`): " + ", ".join(differ))
        print("the docs match the pinned default")
        return
    write(pinned)
    print(f"wrote {RECORD.relative_to(ROOT)} and the regions {', '.join(REGIONS)}")


if __name__ == "__main__":
    main()
