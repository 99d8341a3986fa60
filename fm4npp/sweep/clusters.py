"""Cluster profiles: YAML files in ``sweeps/clusters/`` (or any path) loaded into frozen dataclasses.

A profile is ``local`` (submitit's local executor on this machine) or ``slurm`` (any SLURM cluster),
plus site settings: account, constraint, QOS limits and charge factors, GPUs per node, array limits,
and the numbers the cost model needs (GPU peak, optional calibrated throughput).

Every value that reaches an sbatch script is checked here, at load time, against a documented character
set (:data:`SBATCH_CHARSETS`): no control characters, no whitespace, no quotes. ``setup`` lines are shell
by design, but each must be one line without control characters. The renderer re-checks its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fm4npp.config import load_dataclass, read_yaml
from fm4npp.errors import ConfigError, allowed_list, did_you_mean

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "sweeps" / "clusters"

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
#: Allowed characters of the values that end up in ``#SBATCH`` lines (each must match in full).
SBATCH_CHARSETS: dict[str, tuple[str, str]] = {
    "account": (_NAME, "letters, digits and _ . + - (starting with a letter or digit)"),
    "qos": (_NAME, "letters, digits and _ . + - (starting with a letter or digit)"),
    "job_name": (_NAME, "letters, digits and _ . + - (starting with a letter or digit)"),
    "partition": (rf"{_NAME}(,{_NAME})*", "comma-separated names of letters, digits and _ . + -"),
    # SLURM feature expressions: gpu, gpu&hbm80g, [a|b], a*2, !x
    "constraint": (r"[A-Za-z0-9_.,&|*:!()\[\]-]+", "letters, digits and _ . , & | * : ! ( ) [ ] -"),
    # closest, none, map_gpu:0,1, mask_gpu:0x1, verbose,closest, single:2
    "gpu_bind": (r"[A-Za-z0-9_.,:]+", "letters, digits and _ . , :"),
    "extra_sbatch key": (r"[a-z][a-z0-9-]*", "lower-case letters, digits and - (e.g. --mail-type)"),
    "extra_sbatch value": (r"[A-Za-z0-9_.,:@%=+/-]+", "letters, digits and _ . , : @ % = + / -"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_sbatch_value(kind: str, value: str, where: str = "") -> str:
    """``value`` if it matches the character set of ``kind`` (:data:`SBATCH_CHARSETS`), else ConfigError."""
    pattern, desc = SBATCH_CHARSETS[kind]
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{kind} {value!r} is not allowed; allowed characters: {desc}")
    return value


def check_one_line(value: str, what: str) -> str:
    """A value that may be shell but must stay one line: no control characters (newline, CR, NUL...)."""
    if _CONTROL.search(value):
        raise ConfigError(
            f"{what}: {value!r} contains a control character (newline, tab, ...); not allowed"
        )
    return value


def parse_extra_sbatch(opt: str, where: str) -> tuple[str, str | bool]:
    """``--key=value`` or ``--flag`` → (submitit key, value), both checked against their character sets."""
    if not opt.startswith("--"):
        raise ConfigError(f"{where}: extra_sbatch entry {opt!r} must look like --key=value")
    key, sep, value = opt[2:].partition("=")
    check_sbatch_value("extra_sbatch key", key, where)
    if sep:
        check_sbatch_value("extra_sbatch value", value, where)
    return key.replace("-", "_"), value if sep else True


@dataclass(frozen=True)
class QosConfig:
    """One SLURM QOS: its wall-time limit, node limit and charge factor (node-hours per node-hour)."""

    max_wall_min: int
    charge_factor: float = 1.0
    max_nodes: int = 0  # 0 = no limit
    preemptible: bool = False

    def __post_init__(self) -> None:
        if self.max_wall_min <= 0:
            raise ConfigError(f"max_wall_min must be > 0, got {self.max_wall_min}")
        if not 0 <= self.charge_factor < float("inf"):
            raise ConfigError(f"charge_factor must be >= 0 and finite, got {self.charge_factor}")
        if self.max_nodes < 0:
            raise ConfigError(f"max_nodes must be >= 0, got {self.max_nodes}")


@dataclass(frozen=True)
class ClusterProfile:
    """Where and how cells run. Units in names; every field documented."""

    name: str
    kind: Literal["local", "slurm"]
    gpus_per_node: int  # 0 on CPU-only machines (local)
    gpu_type: str  # e.g. a100-40gb, a100-80gb, h100, mi250x-gcd, cpu
    peak_tflops: float  # dense peak per GPU at the training precision (cost-model fallback)
    mfu: float = 0.3  # assumed model-FLOPs utilisation when no calibrated throughput exists
    qos: dict[str, QosConfig] = field(default_factory=lambda: {"default": QosConfig(max_wall_min=1440)})
    default_qos: str = "default"
    account: str | None = None
    partition: str | None = None
    constraint: str | None = None  # -C, e.g. "gpu" or "gpu&hbm80g" on Perlmutter
    cpus_per_task: int = 1
    mem_gb: float = 0  # per node; 0 = scheduler default
    gpu_flag: Literal["gpus-per-node", "gpus-per-task"] = "gpus-per-node"
    gpu_bind: str | None = None  # e.g. "closest" on Frontier
    max_array_size: int = 1000  # SLURM MaxArraySize
    array_parallelism: int = 0  # %N throttle on arrays; 0 = none
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit → checkpoint + requeue
    max_num_timeout: int = 10  # requeues on time-out that submitit allows per cell (plus plan's)
    setup: tuple[str, ...] = ()  # shell lines run before the job (module load …)
    extra_sbatch: tuple[str, ...] = ()  # extra "--key=value" sbatch options
    max_parallel: int = 0  # local: cells at once; 0 = number of cores
    #: calibrated training throughput, events/s per GPU, by rung name (overrides FLOPs/peak/MFU)
    throughput_events_per_s: dict[str, float] = field(default_factory=dict)
    #: input-pipeline rate per GPU (loader workers of one rank at k = 30, benchmarks/bench_input.py);
    #: the cost model trains at min(GPU rate, this); 0 = not a bound
    input_events_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.default_qos not in self.qos:
            raise ConfigError(
                f"default_qos '{self.default_qos}' is not among the profile's qos: {allowed_list(self.qos)}"
            )
        if not 0 < self.peak_tflops < float("inf") or not 0 < self.mfu <= 1:
            raise ConfigError("peak_tflops must be > 0 and mfu in (0, 1]")
        if self.kind == "slurm" and self.gpus_per_node <= 0:
            raise ConfigError("gpus_per_node must be > 0 for a slurm profile")
        self._check_sbatch_values()

    def _check_sbatch_values(self) -> None:
        where = f"cluster '{self.name}'" if self.name.isprintable() else "cluster profile"
        check_one_line(self.name, "cluster name")
        for q in self.qos:
            check_sbatch_value("qos", q, where)
        for kind in ("account", "partition", "constraint", "gpu_bind"):
            value = getattr(self, kind)
            if value is not None:
                check_sbatch_value(kind, value, where)
        for line in self.setup:
            check_one_line(line, f"{where}: setup")
        for opt in self.extra_sbatch:
            parse_extra_sbatch(opt, where)
        for name, value in (
            ("cpus_per_task", self.cpus_per_task),
            ("max_array_size", self.max_array_size),
            ("signal_delay_s", self.signal_delay_s),
        ):
            if value < 1 if name != "signal_delay_s" else value < 0:
                raise ConfigError(
                    f"{where}: {name} must be ≥ {int(name != 'signal_delay_s')}, got {value}"
                )
        for name in ("array_parallelism", "max_num_timeout", "max_parallel", "gpus_per_node"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} must be ≥ 0, got {getattr(self, name)}")
        if not 0 <= self.mem_gb < 1e7:
            raise ConfigError(f"{where}: mem_gb must be in [0, 1e7), got {self.mem_gb}")
        for rung, tput in self.throughput_events_per_s.items():
            if not 0 < tput < float("inf"):
                raise ConfigError(f"{where}: throughput_events_per_s.{rung} must be > 0 and finite")

    def get_qos(self, name: str | None, source: str = "") -> tuple[str, QosConfig]:
        qname = name or self.default_qos
        if qname not in self.qos:
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}unknown qos '{qname}' for cluster '{self.name}'{did_you_mean(qname, self.qos)}; "
                f"allowed: {allowed_list(self.qos)}"
            )
        return qname, self.qos[qname]


def available_clusters() -> list[str]:
    return sorted(p.stem for p in CLUSTER_DIR.glob("*.yaml"))


def load_cluster(name_or_path: str) -> ClusterProfile:
    """Load a profile by name (``sweeps/clusters/<name>.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CLUSTER_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            names = available_clusters()
            raise ConfigError(
                f"unknown cluster '{name_or_path}'{did_you_mean(name_or_path, names)}; "
                f"allowed: {allowed_list(names)} (or a path to a profile .yaml)"
            )
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    return load_dataclass(ClusterProfile, data, str(path))
