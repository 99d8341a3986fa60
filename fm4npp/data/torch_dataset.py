"""Torch side of the data layer (the only torch import in ``fm4npp.data``): serialized-event dataset,
padding collate with boolean masks, and a deterministic, resumable event-order sampler.

Padding (SPEC §11 #4): every per-hit tensor is padded at the end of the sequence (SPEC §5.3: the causal
scan never mixes it into valid hits) and the padding is described by ``valid`` and the target mask,
never by a sentinel value. Padded entries are zero (``nbr``: -1, "no neighbour") and carry no
meaning: consumers select with the masks, so padding never becomes a label, an instance or a target.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from fm4npp.data.schema import Event

if TYPE_CHECKING:
    from fm4npp.data.flat import FlatEvents
    from fm4npp.data.serialize import Mode, SerializedEvent, VoxelEdges
    from fm4npp.data.shards import ShardSet

READ_CHUNK_EVENTS = 1024  # events per shard read when filling the cache (bounds peak memory)


@dataclass(frozen=True)
class Batch:
    """A padded batch of B events of at most L hits, k neighbours each.

    feats (B, L, 4) float32 = [E_n, η_n, φ_n, r_n]; valid (B, L) bool; nbr (B, L, k) int16 (int32
    beyond 32,768 hits) sequence positions of each hit's k nearest later neighbours in its own
    event, -1 for missing neighbours and padded hits; track_id (B, L) int64; pid (B, L) int8; noise
    (B, L) bool. Padded positions hold zeros: select with ``valid``.

    The batch carries neighbour positions, not the (B, L, k, 3) targets: a target is the
    neighbour's own (η_n, φ_n, r_n), so :meth:`neighbour_targets` gathers it from ``feats`` on the
    device the batch is on. Measured (issue 13, k = 30): the targets were ≈ 3/4 of a micro-batch's
    bytes, and zero-filling them and handing them from a loader worker to the training process
    through shared memory cost ≈ 17 % of a worker's throughput. The hand-over costs a worker
    ≈ 1 ms per MB (shared-memory allocation, page faults), hence the narrow integer types.

    :func:`collate` builds every field in one storage, and such a batch pickles as that one storage
    (:meth:`__reduce__`): a loader worker hands it to the training process through one shared-memory
    file descriptor instead of one per field. Each descriptor is a socket round trip with an HMAC
    handshake (``multiprocessing.resource_sharer``); measured (issue 13), six of them per micro-batch
    were most of the training process's CPU spent on receiving batches.
    """

    feats: torch.Tensor
    valid: torch.Tensor
    nbr: torch.Tensor
    track_id: torch.Tensor
    pid: torch.Tensor
    noise: torch.Tensor

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        tensors = [getattr(self, f.name) for f in fields(self)]
        storage = tensors[0].untyped_storage()
        if all(
            t.device.type == "cpu" and t.untyped_storage().data_ptr() == storage.data_ptr()
            for t in tensors
        ):
            layout = tuple((t.dtype, t.shape, t.stride(), t.storage_offset()) for t in tensors)
            whole = torch.empty(0, dtype=torch.uint8).set_(storage)  # (a storage alone pickles badly)
            return _batch_from_storage, (whole, layout)
        return Batch, tuple(tensors)

    def pin_memory(self) -> Batch:
        """Page-locked copy (DataLoader ``pin_memory=True`` calls this), for asynchronous H2D copies."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)
        }
        return Batch(**moved)

    @property
    def n_events(self) -> int:
        return int(self.valid.shape[0])

    @property
    def n_hits(self) -> int:
        """Valid hits (tokens) in the batch."""
        return int(self.valid.sum())

    @property
    def target_mask(self) -> torch.Tensor:
        """(B, L, k) bool: the neighbour exists (False for missing neighbours and padded hits)."""
        return self.nbr >= 0

    def neighbour_targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets (B, L, k, 3) float32, target_mask (B, L, k) bool) of the k-NNN objective (SPEC
        §5.1): ``feats[b, nbr[b, i, m], 1:4]``, exactly 0 where the neighbour is missing, on this
        batch's device. Equal, bit for bit, to the dense targets of the reference serialization.

        One row gather from the (η_n, φ_n, r_n) rows of all events plus a zero row for missing
        neighbours (CPU, 8 × 900 hits, k = 30: 0.7 ms; ``torch.gather`` + ``where``: 2.1 ms)."""
        b, length, k = self.nbr.shape
        rows = torch.cat([self.feats[..., 1:4].reshape(b * length, 3), self.feats.new_zeros(1, 3)])
        mask = self.target_mask
        first = torch.arange(0, b * length, length, device=self.nbr.device).view(b, 1, 1)
        index = torch.where(mask, self.nbr + first, b * length)  # int64 (+ an int64 tensor)
        return rows.index_select(0, index.view(-1)).view(b, length, k, 3), mask

    @property
    def n_targets(self) -> int:
        """Existing neighbour targets: the denominator of the masked MSE (SPEC §5.1)."""
        return int(self.target_mask.sum())

    @property
    def n_hits_padded(self) -> int:
        """Hits actually computed: B × L, padding included (SPEC §7.6 cost counting)."""
        return int(self.valid.numel())


def _batch_from_storage(
    whole: torch.Tensor, layout: tuple[tuple[torch.dtype, Any, Any, int], ...]
) -> Batch:
    """A :class:`Batch` whose fields are views of the storage of ``whole`` (``Batch.__reduce__``)."""
    storage = whole.untyped_storage()
    views = [
        torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)
        for dtype, shape, stride, offset in layout
    ]
    return Batch(*views)


def _one_storage(specs: Sequence[tuple[tuple[int, ...], torch.dtype]]) -> list[torch.Tensor]:
    """Uninitialised tensors of the given (shape, dtype), views of one storage at offsets aligned
    to 64 bytes. In a loader worker the storage is shared memory from the start (as torch's
    ``default_collate`` does it), so handing the batch over copies nothing."""
    sizes = [math.prod(shape) * dtype.itemsize for shape, dtype in specs]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + -(-n // 64) * 64)
    buffer = torch.empty(offsets[-1], dtype=torch.uint8)
    if get_worker_info() is not None:
        buffer = buffer.new_empty(0).set_(torch.UntypedStorage._new_shared(offsets[-1]))
    return [
        buffer[o : o + n].view(dtype).view(shape)
        for (shape, dtype), o, n in zip(specs, offsets, sizes, strict=False)
    ]


def collate(events: Sequence[SerializedEvent], pad_to: int | None = None) -> Batch:
    """Stack serialized events into a :class:`Batch`, padding at the end to the longest event
    (or to ``pad_to`` hits if larger). All fields share one storage (see :class:`Batch`)."""
    if not events:
        raise ValueError("collate: empty batch")
    lengths = [len(e.feats) for e in events]
    b, k = len(events), int(events[0].nbr.shape[1])
    length = max([*lengths, pad_to or 0, 1])
    if length > np.iinfo(np.int32).max:
        raise ValueError(f"collate: {length} hits per event do not fit int32 neighbour positions")
    position = torch.int16 if length <= np.iinfo(np.int16).max + 1 else torch.int32
    tensors = _one_storage(
        [((b, length, 4), torch.float32), ((b, length), torch.bool), ((b, length, k), position),
         ((b, length), torch.int64), ((b, length), torch.int8), ((b, length), torch.bool)]
    )  # fmt: skip
    feats, valid, nbr, track_id, pid, noise = arrays = [t.numpy() for t in tensors]
    for a in arrays:
        a.fill(-1 if a is nbr else 0)
    for i, (e, n) in enumerate(zip(events, lengths, strict=True)):
        if e.nbr.shape[1] != k:
            raise ValueError(f"collate: events with k={k} and k={e.nbr.shape[1]} in one batch")
        feats[i, :n] = e.feats
        valid[i, :n] = True
        nbr[i, :n] = e.nbr
        track_id[i, :n] = e.track_id
        pid[i, :n] = e.pid
        noise[i, :n] = e.noise
    return Batch(*tensors)


class SerializedEvents(Dataset["SerializedEvent"]):
    """Events of ``event_ids`` serialized once (order, mode, k) and cached in this process's memory.

    A serialized event costs ≈ 8·k bytes per hit (neighbour positions; ≈ 0.2 MB at 840 hits,
    k = 30), so ``cache=False`` (serialize on every access) is for tiers too large to hold.

    ``source`` is a :class:`ShardSet` or :class:`FlatEvents` (events read lazily in chunks on first
    use) or a sequence of in-memory :class:`Event` objects (``event_ids`` then defaults to all of them,
    in order). Pretraining uses it only for the fixed-size validation split; training batches come
    from :func:`step_loader` (serialized on use, in worker processes).
    """

    def __init__(
        self,
        source: ShardSet | FlatEvents | Sequence[Event],
        event_ids: np.ndarray | None,
        edges: VoxelEdges,
        *,
        order: str = "EPR",
        mode: Mode = "fixed",
        k: int = 30,
        cache: bool = True,
    ) -> None:
        self.edges, self.order, self.mode, self.k, self.cache = edges, order, mode, k, cache
        self._events: dict[int, Event] = {}
        if isinstance(source, Sequence):
            self._events = {e.event_id: e for e in source}
            ids = [e.event_id for e in source] if event_ids is None else event_ids
            self._shards: ShardSet | FlatEvents | None = None
        else:
            if event_ids is None:
                raise ValueError("SerializedEvents: event_ids are required with a ShardSet")
            ids, self._shards = event_ids, source
        self.event_ids = np.asarray(ids, dtype=np.int64)
        self._cache: list[SerializedEvent | None] = [None] * len(self.event_ids)

    def __len__(self) -> int:
        return len(self.event_ids)

    def __getitem__(self, index: int) -> SerializedEvent:
        return self.get_many([index])[0]

    def get_many(self, indices: Sequence[int] | np.ndarray) -> list[SerializedEvent]:
        """Serialized events at dataset positions ``indices`` (reading missing ones in one pass)."""
        if not self.cache:
            return [
                self._serialize(e) for e in self._read(self.event_ids[np.asarray(indices, np.int64)])
            ]
        missing = sorted({int(i) for i in indices if self._cache[int(i)] is None})
        for start in range(0, len(missing), READ_CHUNK_EVENTS):
            chunk = missing[start : start + READ_CHUNK_EVENTS]
            for i, event in zip(chunk, self._read(self.event_ids[chunk]), strict=True):
                self._cache[i] = self._serialize(event)
        return [self._cache[int(i)] for i in indices]  # type: ignore[misc]

    def preload(self) -> None:
        """Serialize every event now (e.g. before timing, or before forking workers)."""
        self.get_many(np.arange(len(self)))

    def _read(self, ids: np.ndarray) -> list[Event]:
        if self._shards is not None:
            return self._shards.read_events(ids)
        return [self._events[int(i)] for i in ids]

    def _serialize(self, event: Event) -> SerializedEvent:
        from fm4npp.data.serialize import serialize_event

        return serialize_event(event, self.edges, order=self.order, mode=self.mode, k=self.k)


class EventOrderSampler(Sampler[int]):
    """Infinite stream of dataset indices: epoch e is ``permutation(n)`` seeded by (seed, e).

    The whole state is ``position`` = events drawn so far (all ranks together), so a resumed run
    continues exactly where the checkpoint left off, independent of batch or world size.
    """

    def __init__(self, n_events: int, seed: int, position: int = 0) -> None:
        if n_events <= 0:
            raise ValueError(f"EventOrderSampler: n_events must be > 0, got {n_events}")
        self.n_events, self.seed, self.position = n_events, seed, position
        self._epoch = -1
        self._perm = np.zeros(0, np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """Event order of ``epoch`` (pure function of seed and epoch)."""
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, epoch)))
        return rng.permutation(self.n_events)

    def _perm_of(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, self.permutation(epoch)
        return self._perm

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` indices (crossing epoch boundaries); advances ``position``."""
        out = np.empty(n, np.int64)
        filled = 0
        while filled < n:
            epoch, offset = divmod(self.position, self.n_events)
            chunk = self._perm_of(epoch)[offset : offset + n - filled]
            out[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            self.position += len(chunk)
        return out

    @property
    def epoch(self) -> int:
        return self.position // self.n_events

    def __iter__(self) -> Iterator[int]:
        while True:
            yield int(self.take(1)[0])

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "n_events": self.n_events}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed or state["n_events"] != self.n_events:
            raise ValueError(
                f"sampler state is for seed {state['seed']} / {state['n_events']} events, "
                f"not seed {self.seed} / {self.n_events}"
            )
        self.position = int(state["position"])


class MicroBatchDataset(Dataset[Batch]):
    """Item = one padded micro-batch: ``dataset[ids]`` reads events ``ids`` (an int64 array of event
    ids) from ``source``, serializes them (order, mode, k) and collates them. Pure function of ``ids``,
    so any number of worker processes gives the same batches in the same order."""

    def __init__(
        self, source: FlatEvents, edges: VoxelEdges, *, order: str, mode: Mode, k: int
    ) -> None:
        self.source, self.edges, self.order, self.mode, self.k = source, edges, order, mode, k

    def __len__(self) -> int:  # items are addressed by id arrays, not positions
        raise TypeError("MicroBatchDataset is indexed by event-id arrays from StepSampler")

    def __getitem__(self, ids: np.ndarray) -> Batch:  # type: ignore[override]
        from fm4npp.data.serialize import serialize_event

        events = self.source.read_events(ids)
        return collate(
            [serialize_event(e, self.edges, order=self.order, mode=self.mode, k=self.k) for e in events]
        )


def dispatch_order(n_micro: int, step: int) -> list[int]:
    """Order in which a step's ``n_micro`` micro-batches (ascending size) are yielded: consecutive
    pairs, the smaller first in even pairs of even steps, mirrored in odd pairs and odd steps.

    Why: a DataLoader hands item t to worker t mod W, in order, with a bounded number in flight
    per worker, so a worker that draws cheaper items idles. Ascending order gives worker 0 of 2 the
    small half of every step (measured, k = 30: 9.8 vs 14.7 ms per micro-batch, worker 0 busy
    66 %). This order gives each of 2 workers one smaller and one larger micro-batch of every four
    (positions 0, 3 | 1, 2 of the ascending list) and swaps the two sets every step, so the
    remaining imbalance cancels over two steps. It depends on the step alone, never on the worker
    count: the training step's accumulation order, hence the run, stays the same with any number of
    workers and on resume. Any W: the items still rotate over the workers."""
    order = list(range(n_micro))
    for pair in range(n_micro // 2):
        if (pair + step) % 2:
            order[2 * pair], order[2 * pair + 1] = order[2 * pair + 1], order[2 * pair]
    return order


class StepSampler(Sampler[np.ndarray]):
    """Infinite stream of one rank's micro-batches (event-id arrays), step after step.

    Step s takes the next ``batch_events`` positions of :class:`EventOrderSampler` (seeded by ``seed``,
    starting at ``position``): the global batch. This rank keeps every ``world_size``-th event from
    ``rank``, sorts them by size (stable: micro-batches of similar length, far less padding), cuts
    them into ``micro_batch_events`` and yields the cuts in :func:`dispatch_order` (balanced over
    loader workers). Step s is the ``position // batch_events``-th of the run, so a run resumed at
    position p sees exactly the batches, in the same order, of an uninterrupted one, whatever the
    number of loader workers."""

    def __init__(
        self,
        source: FlatEvents,
        tier_ids: np.ndarray,
        *,
        seed: int,
        position: int,
        batch_events: int,
        micro_batch_events: int,
        rank: int = 0,
        world_size: int = 1,
        order: Any = None,
    ) -> None:
        """``order``: the event-order stream (``take(n)`` → indices into ``tier_ids``, ``position``);
        default :class:`EventOrderSampler` over the tier (a WSD run passes its nested stream)."""
        self.order = order
        self.source, self.tier_ids = source, np.asarray(tier_ids, dtype=np.int64)
        self.seed, self.position = seed, position
        self.batch_events, self.micro = batch_events, micro_batch_events
        self.rank, self.world_size = rank, world_size

    def micro_batches_per_step(self) -> int:
        return -(-(self.batch_events // self.world_size) // self.micro)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.order or EventOrderSampler(len(self.tier_ids), self.seed, self.position)
        while True:
            step = order.position // self.batch_events
            ids = self.tier_ids[order.take(self.batch_events)[self.rank :: self.world_size]]
            ids = ids[np.argsort(self.source.sizes(ids), kind="stable")]
            cuts = [ids[start : start + self.micro] for start in range(0, len(ids), self.micro)]
            for i in dispatch_order(len(cuts), step):
                yield cuts[i]


def default_loader_workers(cuda: bool = True) -> int:
    """Loader worker processes per rank when ``train.loader_workers`` is -1 (auto): the job's CPUs per
    task (``SLURM_CPUS_PER_TASK``) minus one for the training process itself. Outside SLURM: on a GPU,
    this process's CPU affinity shared by the node's ``LOCAL_WORLD_SIZE`` ranks, minus one; on the CPU,
    none (local studies already run one cell per core, and torch's own threads use the rest)."""
    env = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if env.strip().isdigit():
        cpus = int(env)
    elif cuda:
        local = os.environ.get("LOCAL_WORLD_SIZE", "1")
        cpus = len(os.sched_getaffinity(0)) // max(1, int(local) if local.isdigit() else 1)
    else:
        return 0
    return max(0, cpus - 1)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # one core per worker: serialization is single-threaded numba/numpy


def _identity(batch: Batch) -> Batch:
    return batch


def step_loader(
    dataset: MicroBatchDataset, sampler: StepSampler, workers: int, pin_memory: bool = False
) -> DataLoader[Batch]:
    """DataLoader of a rank's micro-batches: ``workers`` processes (0 = in this process) serialize
    ahead of the training step (2 micro-batches in flight per worker), batches in sampler order;
    pinned memory for CUDA."""
    if workers < 0:
        raise ValueError(f"step_loader: workers must be >= 0, got {workers}")
    extra: dict[str, object] = {}
    if workers:
        extra = {
            "worker_init_fn": _worker_init,
            "persistent_workers": False,
        }
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        sampler=sampler,
        batch_size=None,
        collate_fn=_identity,
        num_workers=workers,
        pin_memory=pin_memory,
        **extra,  # type: ignore[arg-type]
    )
