"""submitit executors from a cluster profile, job-array grouping, and dry-run sbatch rendering.

Cells that need the same resources (nodes, GPUs, wall time, requeue budget) go into one job array,
chunked to the profile's ``max_array_size``. The sbatch script of an array is rendered by submitit's own
``_make_sbatch_string``, so ``--dry-run`` shows byte for byte what ``sbatch`` would receive.
submitit is imported inside functions only (``plan``/``status`` never pay for it).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fm4npp.errors import ConfigError, SubmitError
from fm4npp.sweep.clusters import (
    ClusterProfile,
    QosConfig,
    check_one_line,
    check_sbatch_value,
    parse_extra_sbatch,
)
from fm4npp.sweep.plan import PlannedCell

WALL_SAFETY = 1.25  # requested time = 1.25 × the cost model's wall time (its MFU is a guess) ...
STARTUP_MIN = 10  # ... + start-up, data loading and downstream evaluation, minutes ...
TIME_QUANTUM_MIN = 5  # ... rounded up to 5 minutes, capped at the QOS limit


@dataclass(frozen=True)
class ArrayGroup:
    """Cells submitted as one job array: same resources, at most ``max_array_size`` of them."""

    cells: tuple[PlannedCell, ...]
    nodes: int
    gpus_per_node: int  # = tasks per node (one task per GPU); 0 on local
    time_min: int
    max_num_timeout: int


def requested_time_min(cell: PlannedCell, qos: QosConfig, cluster: ClusterProfile) -> int:
    """Wall time to ask for: the cell's need with margins, or the QOS limit when it needs more slots."""
    if cell.cost.n_slots > 1:
        return qos.max_wall_min
    need = cell.cost.wall_time_h * 60 * WALL_SAFETY + STARTUP_MIN + cluster.signal_delay_s / 60
    need = math.ceil(need / TIME_QUANTUM_MIN) * TIME_QUANTUM_MIN
    return int(min(qos.max_wall_min, need))


def array_groups(cells: list[PlannedCell], cluster: ClusterProfile, qos: QosConfig) -> list[ArrayGroup]:
    """Group cells by resources (first-seen order), then chunk each group to ``max_array_size``."""
    groups: dict[tuple[int, int, int, int], list[PlannedCell]] = {}
    for cell in cells:
        nodes = cell.cost.nodes
        gpn = math.ceil(cell.cost.gpus / nodes) if cluster.kind == "slurm" else 0
        timeouts = cluster.max_num_timeout + cell.cost.n_slots - 1
        key = (nodes, gpn, requested_time_min(cell, qos, cluster), timeouts)
        groups.setdefault(key, []).append(cell)
    size = max(1, cluster.max_array_size)
    out = []
    for (nodes, gpn, time_min, timeouts), members in groups.items():
        for i in range(0, len(members), size):
            out.append(ArrayGroup(tuple(members[i : i + size]), nodes, gpn, time_min, timeouts))
    return out


def _extra_sbatch(cluster: ClusterProfile) -> dict[str, str | bool]:
    """``extra_sbatch: ["--exclusive", "--mail-type=END"]`` → submitit's ``additional_parameters``."""
    extra: dict[str, str | bool] = {}
    for opt in cluster.extra_sbatch:
        key, value = parse_extra_sbatch(opt, f"cluster '{cluster.name}'")
        extra[key] = value
    if cluster.gpu_bind:
        extra["gpu_bind"] = cluster.gpu_bind
    return extra


def slurm_parameters(
    group: ArrayGroup, cluster: ClusterProfile, qos_name: str, account: str | None, job_name: str
) -> dict[str, Any]:
    """submitit ``SlurmExecutor.update_parameters`` keywords for one array (values checked again)."""
    where = f"cluster '{cluster.name}'"
    check_sbatch_value("job_name", job_name, where)
    check_sbatch_value("qos", qos_name, where)
    if account is not None:
        check_sbatch_value("account", account, where)
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": group.time_min,
        "nodes": group.nodes,
        "ntasks_per_node": group.gpus_per_node,
        "cpus_per_task": cluster.cpus_per_task,
        "qos": qos_name,
        "account": account,
        "partition": cluster.partition,
        "constraint": cluster.constraint,
        "signal_delay_s": cluster.signal_delay_s,
        "array_parallelism": cluster.array_parallelism or cluster.max_array_size,
        "setup": list(cluster.setup) or None,
        "additional_parameters": _extra_sbatch(cluster) or None,
    }
    if cluster.gpu_flag == "gpus-per-task":
        params["gpus_per_task"] = 1
    else:
        params["gpus_per_node"] = group.gpus_per_node
    if cluster.mem_gb:  # submitit's own GB → "64GB" / "1536MB" conversion
        gb = cluster.mem_gb
        params["mem"] = f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"
    return {k: v for k, v in params.items() if v is not None}


def python_command() -> str:
    return shlex.quote(sys.executable)


def render_sbatch(
    group: ArrayGroup,
    cluster: ClusterProfile,
    qos_name: str,
    account: str | None,
    job_name: str,
    folder: Path,
    python: str | None = None,
) -> str:
    """The exact sbatch script submitit writes for ``group`` (``--dry-run``; golden tests)."""
    from submitit.slurm import slurm as submitit_slurm

    check_one_line(str(folder), "results_dir")
    params = slurm_parameters(group, cluster, qos_name, account, job_name)
    command = " ".join(
        [python or python_command(), "-u -m submitit.core._submit", shlex.quote(str(folder))]
    )
    map_count = len(group.cells) if len(group.cells) > 1 else None
    script = str(
        submitit_slurm._make_sbatch_string(command=command, folder=folder, map_count=map_count, **params)
    )
    check_script(script, list(cluster.setup))
    return script


_DIRECTIVE = re.compile(r"#SBATCH --[a-z][a-z0-9-]*(=(?P<value>.+))?")


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return []


def check_script(script: str, setup: list[str]) -> None:
    """Defence in depth: every line of a rendered sbatch script is blank, the shebang, a comment or an
    ``#SBATCH --key[=value]`` directive, one of the profile's ``setup`` lines, or submitit's export and
    ``srun ... python -u -m submitit.core._submit FOLDER`` command line."""
    for line in script.split("\n"):
        if line == "" or line in setup or line == "export SUBMITIT_EXECUTOR=slurm":
            continue
        if line.startswith("#SBATCH"):
            m = _DIRECTIVE.fullmatch(line)
            if not m or (m["value"] is not None and len(_split(m["value"])) != 1):
                raise ConfigError(f"sbatch script: malformed directive {line!r}; a value is not allowed")
            continue
        if line.startswith("#") and not line.startswith("#SBATCH"):
            continue
        words = _split(line)
        if not (
            words[:2] == ["srun", "--unbuffered"]
            and words[-4:-1] == ["-u", "-m", "submitit.core._submit"]
        ):
            raise ConfigError(f"sbatch script: unexpected line {line!r}; a value is not allowed")


def local_parallelism(cluster: ClusterProfile, max_parallel: int | None) -> int:
    """Cells at once on the local executor: --max-parallel, else the profile's, else the cores."""
    return max_parallel or cluster.max_parallel or os.cpu_count() or 1


def make_executor(
    cluster: ClusterProfile,
    folder: Path,
    group: ArrayGroup,
    qos_name: str,
    account: str | None,
    job_name: str,
) -> Any:
    """A configured submitit executor for one array (Local or Slurm)."""
    import submitit

    ex: Any
    if cluster.kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=group.max_num_timeout)
        ex.update_parameters(
            # local jobs start at once and queue for a core slot (max_parallel) inside their own
            # process, so the time limit must cover the wait: the QOS limit, not the cell's wall time
            timeout_min=cluster.get_qos(qos_name)[1].max_wall_min,
            signal_delay_s=cluster.signal_delay_s,
            tasks_per_node=1,
            gpus_per_node=0,
            setup=list(cluster.setup),
        )
        return ex
    check_one_line(str(folder), "results_dir")
    try:
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=group.max_num_timeout)
    except RuntimeError as err:  # no srun on this machine
        raise SubmitError(f"cluster '{cluster.name}' is a slurm profile but {err}") from None
    ex.update_parameters(**slurm_parameters(group, cluster, qos_name, account, job_name))
    return ex
