"""Cost model: FLOPs, GPU-hours, wall time, nodes and node-hours of one cell (SPEC §6–7).

GPU-hours come from a calibrated throughput (events/s per GPU for the rung, in the cluster profile)
when there is one, otherwise from FLOPs ÷ (GPU peak × assumed MFU); which one was used is stated in
every row (``cost_source``). The training rate is min(GPU rate, input-pipeline rate) when the profile
has a calibrated ``input_events_per_s`` (benchmarks/bench_input.py); ``bound`` says which one applies.
Pure functions of numbers; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from fm4npp.model.ladder import Rung, flops_per_token, n_params
from fm4npp.sweep.clusters import ClusterProfile, QosConfig


@dataclass(frozen=True)
class CellCost:
    n_params: int  # N, non-embedding
    events_seen: int  # D
    n_hits: float  # tokens seen = D × mean hits per event
    flops: float  # C, analytic (SPEC §7.6)
    flops_6nd: float  # 6·N·tokens, for comparison (SCALING §6.1)
    gpus: int
    nodes: int
    gpu_hours: float
    wall_time_h: float  # per cell, on its GPUs, ignoring queue time
    node_hours: float  # nodes × wall × QOS charge factor
    fits_qos: bool  # one job slot is enough (else it is chained through n_slots requeues)
    n_slots: int  # wall-time slots needed: requeues = n_slots − 1
    cost_source: str  # "calibrated" or "flops/(peak×mfu)"
    bound: str = "gpu"  # "input" when the loader workers, not the GPU, set the rate (issue 13)
    # WSD branch: node-hours of the cell as its own cosine run (node_hours is then what the branch's
    # trunk segment and cooldown cost); None for a cosine cell
    cosine_node_hours: float | None = None


def cell_cost(
    rung: Rung,
    events_seen: int,
    hits_per_event: float,
    gpus: int,
    cluster: ClusterProfile,
    qos: QosConfig,
) -> CellCost:
    n_hits = events_seen * hits_per_event
    flops = flops_per_token(rung, seq_len=hits_per_event) * n_hits
    throughput = cluster.throughput_events_per_s.get(rung.name)
    if throughput:
        source = "calibrated"
    else:  # events/s per GPU implied by FLOPs ÷ (peak × MFU)
        per_event = flops / events_seen if events_seen else 0.0
        throughput = cluster.peak_tflops * 1e12 * cluster.mfu / per_event if per_event else math.inf
        source = f"flops/(peak×mfu={cluster.mfu:g})"
    bound = "gpu"
    if 0 < cluster.input_events_per_s < throughput:
        throughput, bound = cluster.input_events_per_s, "input"
    wall_h = events_seen / (throughput * gpus) / 3600.0
    gpu_hours = wall_h * gpus
    nodes = math.ceil(gpus / cluster.gpus_per_node) if cluster.gpus_per_node > 0 else 1
    # The last signal_delay_s of each slot goes to checkpointing; the rest trains.
    usable_h = max(qos.max_wall_min / 60.0 - cluster.signal_delay_s / 3600.0, 1e-9)
    n_slots = max(1, math.ceil(wall_h / usable_h))
    fits = n_slots == 1 and (qos.max_nodes == 0 or nodes <= qos.max_nodes)
    return CellCost(
        n_params=n_params(rung),
        events_seen=events_seen,
        n_hits=n_hits,
        flops=flops,
        flops_6nd=6.0 * n_params(rung) * n_hits,
        gpus=gpus,
        nodes=nodes,
        gpu_hours=gpu_hours,
        wall_time_h=wall_h,
        node_hours=nodes * wall_h * qos.charge_factor,
        fits_qos=fits,
        n_slots=n_slots,
        cost_source=source,
        bound=bound,
    )


def wsd_branch_cost(cell: CellCost, billed: CellCost) -> CellCost:
    """A WSD cooldown branch: N, D and C of the cell (``cell``, costed as its own cosine run), wall
    time, GPU-hours and node-hours of what its job trains (``billed``: the trunk segment since the
    previous branch point, then the cooldown)."""
    return replace(
        cell,
        gpu_hours=billed.gpu_hours,
        wall_time_h=billed.wall_time_h,
        node_hours=billed.node_hours,
        fits_qos=billed.fits_qos,
        n_slots=billed.n_slots,
        cost_source=billed.cost_source,
        cosine_node_hours=cell.node_hours,
    )


def wsd_billed_events(
    tiers: tuple[int, ...], epochs: float, batch_events: int, cooldown_fraction: float
) -> dict[int, int]:
    """Events each WSD branch trains (trunk segment c_(i-1) → c_i, then its cooldown c_i → S_i), by
    tier; their sum is the trunk to c_K plus every cooldown (:func:`fm4npp.data.nested.wsd_total_steps`)."""
    from fm4npp.data.nested import branch_points

    points = branch_points(tiers, epochs, batch_events, cooldown_fraction)
    starts = [0] + [p.cooldown_start for p in points[:-1]]
    return {
        p.n_events: (p.steps - start) * batch_events for p, start in zip(points, starts, strict=True)
    }
