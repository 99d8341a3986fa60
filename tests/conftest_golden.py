"""Golden-file comparison for tests: ``pytest --update-golden`` rewrites the pinned files.

Registered from ``tests/conftest.py`` with ``pytest_plugins = ("conftest_golden",)``; until then the
option is absent and ``FM4NPP_UPDATE_GOLDEN=1`` does the same.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE_ENV = "FM4NPP_UPDATE_GOLDEN"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing",
    )


def _update_requested(config: pytest.Config) -> bool:
    try:
        flag = bool(config.getoption("--update-golden"))
    except ValueError:  # plugin not registered: only the environment variable
        flag = False
    return flag or os.environ.get(UPDATE_ENV, "") not in ("", "0")


@pytest.fixture(name="golden")
def golden_fixture(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden(name, text)``: compare ``text`` with ``tests/golden/<name>`` line by line."""
    update = _update_requested(request.config)

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if update or not path.is_file():
            if not update:
                pytest.fail(
                    f"{path} does not exist; create it with: pytest {request.node.nodeid} --update-golden"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        expected = path.read_text()
        if expected != text:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"{path} (pinned)",
                    tofile="rendered now",
                )
            )
            pytest.fail(
                f"{name} differs from the pinned golden file:\n{diff}\n"
                f"If the change is intended, regenerate with:\n"
                f"  pytest {request.node.nodeid} --update-golden   (or {UPDATE_ENV}=1 pytest ...)",
                pytrace=False,
            )

    return check
