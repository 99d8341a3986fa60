"""Run the CLI with the stand-in cell instead of the real trainer (a test double, for subprocess tests):

    python tests/cli_with_standin.py '{"steps": 20, "step_s": 0.05}' submit sweep.yaml ...

The first argument is a JSON object of :class:`doubles.StandinOptions`; the rest is the CLI's argv.
``submit`` then injects ``standin_cell(**options)`` (``fm4npp.sweep.submit.REAL_CELL``); submitit
pickles it by reference, so the job processes import ``doubles`` too: ``tests/`` goes on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)


def main(argv: list[str]) -> int:
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if TESTS not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, *paths])
    from doubles import standin_cell

    from fm4npp.cli.main import main as cli_main
    from fm4npp.sweep import submit

    submit.REAL_CELL = standin_cell(**json.loads(argv[0]))
    return cli_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
