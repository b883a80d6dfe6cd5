"""``python -m experiments.peers [overrides] [--against <project run folder>]``: the peers side by side.

The overrides are the project's (``dataset=banking77 dataset.shots=10 seed=43``) plus the peers' own
(``peers=[setfit,logistic_regression]``, ``peers.setfit.num_iterations=20``, ``peers_dir=<folder>``). A mistake is
one line on stderr and exit 2, as with ``run.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

USAGE = "usage: python -m experiments.peers [overrides ...] [--against <project run folder>]"


def split_arguments(argv: list[str]) -> tuple[list[str], Path | None]:
    """The Hydra overrides and the ``--against`` folder (``--against X`` or ``--against=X``).

    Raises:
        UserError: an option other than ``--against``, or ``--against`` without a folder.
    """
    from experiments.errors import UserError

    overrides: list[str] = []
    against: Path | None = None
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--against" or argument.startswith("--against="):
            value = argument.partition("=")[2] if "=" in argument else next(arguments, "")
            if not value:
                raise UserError(f"--against needs a project run folder. {USAGE}")
            against = Path(value)
        elif argument.startswith("-"):
            raise UserError(f"unknown option {argument}. {USAGE}")
        else:
            overrides.append(argument)
    return overrides, against


def check_peer_names(overrides: list[str], conf: Path) -> None:
    """Refuse ``peers=[...]`` naming no option of ``conf/peers/``, naming the options (Hydra says only "Could not
    load").

    Raises:
        UserError: the first unknown name and the peers there are.
    """
    from experiments.errors import UserError

    known = sorted(path.stem for path in (conf / "peers").glob("*.yaml"))
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key != "peers":
            continue
        for name in (part.strip() for part in value.strip("[]").split(",")):
            if name and name not in known:
                raise UserError(f"peers: no peer {name!r} in {conf / 'peers'}; choose from {', '.join(known)}.")


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from experiments.threads import choose_wait_policy

    choose_wait_policy()  # before torch loads, as run.py does
    from experiments.errors import UserError
    from experiments.secrets import guard_output

    guard_output()
    # What each peer is doing, on stderr (a peer's fit can take many minutes); nothing before the inputs are checked,
    # so a mistake stays one line.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    progress = logging.getLogger("experiments.peers")
    progress.setLevel(logging.INFO)
    progress.addHandler(handler)
    progress.propagate = False
    if any(argument in ("-h", "--help") for argument in argv):
        print(USAGE)
        print(__doc__)
        return 0
    try:
        from omegaconf import open_dict

        from experiments.api import compose, config_dir
        from experiments.app import limit_threads
        from experiments.peers import compare
        from experiments.peers.table import print_console

        overrides, against = split_arguments(argv)
        check_peer_names(overrides, config_dir())
        cfg = compose(overrides, name="peer_comparison")
        choices = {str(group): str(option) for group, option in cfg.hydra.runtime.choices.items()}
        with open_dict(cfg):
            del cfg["hydra"]
        limit_threads(None)
        comparison = compare.run(cfg, choices, against)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_console(comparison)
    print(f"peers folder: {comparison.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
