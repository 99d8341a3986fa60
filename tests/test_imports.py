"""Import contracts (ARCHITECTURE §3, STYLE rule 7): light commands stay light, layers flow downward."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "from fm4npp.cli.main import build_parser; build_parser()",
        "import fm4npp.sweep.plan, fm4npp.store.catalog, fm4npp.model.ladder",
        "import analysis",
    ],
)
def test_light_modules_do_not_import_torch_or_submitit(code: str) -> None:
    mods = loaded_after(code)
    assert "torch" not in mods
    assert "submitit" not in mods


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_analysis_never_imports_torch_or_training_layers() -> None:
    allowed_fm4npp = ("fm4npp.errors", "fm4npp.config", "fm4npp.store", "fm4npp.model.ladder")
    for path in (REPO / "analysis").rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith("torch"), f"{path} imports {name}"
            if name.startswith("fm4npp"):
                assert name.startswith(allowed_fm4npp), f"{path} imports {name}"


LAYERS = {
    "config": 0,
    "errors": 0,
    "atomic": 0,
    "data": 0,
    "model": 1,
    "store": 1,
    "train": 2,
    "eval": 2,
    "sweep": 3,
    "workflow": 4,
    "cli": 5,
}
ANALYSIS_FROM = 4  # `analysis` sits beside L3: only workflow (L4) and cli (L5) may import it


def test_layers_cover_every_package() -> None:
    packages = {p.name for p in (REPO / "fm4npp").iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_only_workflow_and_cli_import_analysis() -> None:
    offenders = []
    for path in (REPO / "fm4npp").rglob("*.py"):
        own = path.relative_to(REPO / "fm4npp").parts[0].removesuffix(".py")
        if LAYERS.get(own, 0) >= ANALYSIS_FROM:
            continue
        offenders += [
            f"{path.relative_to(REPO)} imports {n}"
            for n in _imports(path)
            if n == "analysis" or n.startswith("analysis.")
        ]
    assert not offenders, offenders


def test_fm4npp_layers_import_downward() -> None:
    for path in (REPO / "fm4npp").rglob("*.py"):
        rel = path.relative_to(REPO / "fm4npp").parts
        own = rel[0].removesuffix(".py")
        if own not in LAYERS:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "fm4npp" or len(parts) < 2 or parts[1] not in LAYERS:
                continue
            assert LAYERS[parts[1]] <= LAYERS[own], (
                f"{path.relative_to(REPO)} (L{LAYERS[own]}) imports {name}"
            )


def test_data_layer_is_torch_free_except_torch_dataset() -> None:
    for path in (REPO / "fm4npp" / "data").rglob("*.py"):
        if path.name == "torch_dataset.py":
            continue
        assert not any(n.startswith("torch") for n in _imports(path)), path
