"""The exact sbatch scripts Perlmutter and Frontier would receive, pinned as golden files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest_golden import golden_fixture  # noqa: F401  (until conftest.py loads the plugin)

from fm4npp.sweep.clusters import load_cluster
from fm4npp.sweep.executors import array_groups, render_sbatch, slurm_parameters
from fm4npp.sweep.plan import make_plan
from fm4npp.sweep.spec import load_sweep

FOLDER = Path("/global/scratch/results/golden/submitit")  # fixed: the scripts must not vary by machine
# 1 GPU per cell: the paper's m1; 4 nodes: m5 with 4 × GPUs per node of the site
CASES = {"1gpu": ("m1", None), "4node": ("m5", 4)}


def _groups(tmp_path: Path, cluster_name: str, case: str):  # type: ignore[no-untyped-def]
    model, nodes = CASES[case]
    cluster = load_cluster(cluster_name)
    doc = {
        "study": "golden",
        "models": [model],
        "datasets": ["d1"],
        "seeds": [0, 1],
        "cluster": cluster_name,
    }
    if nodes:
        doc["gpus"] = {model: nodes * cluster.gpus_per_node}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(doc))
    plan = make_plan(load_sweep(sweep), cluster)
    return plan, cluster, array_groups(list(plan.cells), cluster, cluster.get_qos(plan.qos)[1])


@pytest.mark.parametrize("cluster_name", ["perlmutter", "frontier"])
@pytest.mark.parametrize("case", ["1gpu", "4node"])
def test_sbatch_golden(
    tmp_path: Path, cluster_name: str, case: str, golden: Callable[[str, str], None]
) -> None:
    plan, cluster, groups = _groups(tmp_path, cluster_name, case)
    assert len(groups) == 1
    assert len(groups[0].cells) == 2
    script = render_sbatch(
        groups[0], cluster, plan.qos, cluster.account, "fm4npp-golden", FOLDER, python="python3"
    )
    golden(f"sbatch_{cluster_name}_{case}.txt", script)


def test_4node_requests_one_task_per_gpu(tmp_path: Path) -> None:
    plan, cluster, groups = _groups(tmp_path, "perlmutter", "4node")
    params = slurm_parameters(groups[0], cluster, plan.qos, cluster.account, "x")
    assert (params["nodes"], params["ntasks_per_node"], params["gpus_per_node"]) == (4, 4, 4)
    assert params["account"] == "m0000_g"
    assert params["constraint"] == "gpu"


def test_arrays_are_chunked_to_max_array_size(tmp_path: Path) -> None:
    from dataclasses import replace

    plan, cluster, _ = _groups(tmp_path, "perlmutter", "1gpu")
    small = replace(cluster, max_array_size=1)
    groups = array_groups(list(plan.cells), small, small.get_qos(plan.qos)[1])
    assert [len(g.cells) for g in groups] == [1, 1]
