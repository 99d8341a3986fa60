"""Shared fixtures and tier handling: ``gpu`` tests skip without CUDA, ``slurm`` without a controller."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ("conftest_golden",)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Job processes (submitit's local executor, SLURM with --export=ALL) unpickle test doubles by
    reference (``doubles.standin_pretrain``): put ``tests/`` on their import path."""
    tests = str(Path(__file__).resolve().parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if tests not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, *paths) if p)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def _slurm_available() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "alloc", "completing"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    need_gpu = any("gpu" in item.keywords for item in items)
    need_slurm = any("slurm" in item.keywords for item in items)
    has_gpu = _cuda_available() if need_gpu else False
    has_slurm = _slurm_available() if need_slurm else False
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="gpu tier: no CUDA device on this machine"))
        if "slurm" in item.keywords and not has_slurm:
            item.add_marker(
                pytest.mark.skip(
                    reason="slurm tier: no SLURM controller answers (run tests/slurm_cluster.sh up)"
                )
            )


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    """An empty results root inside the test's tmp dir."""
    root = tmp_path / "results"
    root.mkdir()
    return root
