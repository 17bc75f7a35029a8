"""Where a run's work happens: one process, or several processes started by torchrun (DDP).

The engine asks its strategy four narrow things and nothing else:

- placement: which device this process uses, and the model it trains with (wrapped in
  DistributedDataParallel across processes);
- data: which images this process loads (a seeded shard of each epoch's shuffle for training, a
  fixed share for inference passes);
- reduction: epoch totals, sample probabilities and feature sets put together across processes, so
  every process sees the same numbers and takes the same decisions (best epoch, early stopping);
- control: stop and pause decided by the process that writes the run folder (rank 0) and applied by
  all of them at the same batch, and which process writes.

``SingleProcess`` is today's behaviour at no cost. ``DistributedProcesses`` is built from the
environment torchrun gives each process (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time

import torch

# Collectives wait this long for the slowest process (a first feature pass on a slow disk) before they
# fail; a process that dies is noticed sooner by torchrun, which then ends the others.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
PAUSE_POLL_SECONDS = 0.2

CONTINUE, PAUSE, STOP = 0, 1, 2


class SingleProcess:
    rank = 0
    world_size = 1
    local_world_size = 1  # processes of the run on this machine (they share its cores)
    is_writer = True
    distributed = False

    def place(self, device_info):
        return device_info

    def wrap(self, model):
        return model

    def train_batches(self, count: int, batch_size: int, seed: int = 0):
        return None  # the loader shuffles with its own seeded generator

    def set_epoch(self, sampler, epoch: int) -> None:
        pass

    def inference_share(self, count: int) -> list[int] | None:
        return None  # all of them, in order

    def per_process_batch(self, batch_size: int) -> int:
        return batch_size

    def common_batches(self, count: int, batch_size: int) -> int:
        """Batches of an inference pass that every process has (where collective checks are safe)."""
        return -(-count // batch_size)

    def between_batches(self, control, collective: bool = True) -> None:
        control.checkpoint()

    def reduce_totals(self, totals):
        return totals

    def reduce_count(self, value: int) -> int:
        return value

    def gather_objects(self, value) -> list:
        return [value]

    def gather_features(self, feature_set):
        return feature_set

    def sync_buffers(self, model) -> None:
        pass

    def close(self) -> None:
        pass


def check_a_gpu_is_here(device_name: str) -> None:
    """--device cuda where there is no GPU: said by the launcher before it starts the processes (each of
    them said it too, and torchrun ended the others, sometimes before they had)."""
    from tl_studio.core.errors import UserError

    if device_name == "cuda" and not torch.cuda.is_available():
        raise UserError("No CUDA GPU is available here; use --device cpu for CPU processes.")


class DistributedProcesses(SingleProcess):
    """One of WORLD_SIZE processes. CUDA: one GPU per process (LOCAL_RANK), NCCL; otherwise gloo."""

    distributed = True

    def __init__(self, rank: int, world_size: int, local_rank: int, use_cuda: bool):
        import torch.distributed as dist

        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.is_writer = rank == 0
        self.use_cuda = use_cuda
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
        self.dist = dist
        # NCCL moves CUDA tensors only; gloo CPU tensors
        self.comm_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")

    @classmethod
    def from_environment(cls, device_name: str) -> "DistributedProcesses":
        from tl_studio.core.errors import UserError

        try:
            rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except (KeyError, ValueError):
            raise UserError("This process was not started by torchrun; use --nproc-per-node N.") from None
        use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
        check_a_gpu_is_here(device_name)
        if use_cuda and local >= torch.cuda.device_count():
            raise UserError(f"Process {local} on this machine has no GPU of its own ({torch.cuda.device_count()} "
                            f"found); lower --nproc-per-node to the number of GPUs.")
        return cls(rank, world, local, use_cuda)

    @property
    def local_world_size(self) -> int:
        """Processes of the run on this machine (torchrun's --nproc-per-node, which it exports)."""
        try:
            return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        except ValueError:
            return 1

    # ---- placement ------------------------------------------------------------------------------
    def place(self, device_info):
        if device_info.is_cuda:
            props = torch.cuda.get_device_properties(self.local_rank)
            return dataclasses.replace(device_info, device=torch.device("cuda", self.local_rank),
                                       description=f"{self.world_size} processes, one GPU each (this one: "
                                                   f"{props.name})")
        threads = torch.get_num_threads()  # torchrun_launch shares the cores out between the processes
        return dataclasses.replace(device_info, description=f"{self.world_size} CPU processes ({threads} thread"
                                                            f"{'s' if threads != 1 else ''} each)")

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        if not any(p.requires_grad for p in model.parameters()):
            return model
        ids = [self.local_rank] if self.use_cuda else None
        return DistributedDataParallel(model, device_ids=ids)

    # ---- data -----------------------------------------------------------------------------------
    def train_batches(self, count: int, batch_size: int, seed: int = 0):
        return ShardedBatches(count, batch_size, self.rank, self.world_size, seed)

    def set_epoch(self, batches, epoch: int) -> None:
        if isinstance(batches, ShardedBatches):
            batches.set_epoch(epoch)

    def inference_share(self, count: int) -> list[int]:
        return list(range(self.rank, count, self.world_size))  # each image exactly once across processes

    def per_process_batch(self, batch_size: int) -> int:
        """``--batch-size`` is the global batch: each process takes its share of it."""
        return max(1, batch_size // self.world_size)

    def common_batches(self, count: int, batch_size: int) -> int:
        return min(-(-len(range(r, count, self.world_size)) // batch_size) for r in range(self.world_size))

    # ---- control --------------------------------------------------------------------------------
    def between_batches(self, control, collective: bool = True) -> None:
        """Rank 0's stop/pause wish, applied on every process at the same batch. ``collective`` is
        False where the processes do not all reach this point the same number of times (the tail of
        an uneven inference share): only this process's own control is checked there."""
        if not collective:
            if self.is_writer:
                control.checkpoint()
            return
        began = None
        while True:
            decision = self._broadcast_int(_wish(control) if self.is_writer else CONTINUE)
            if decision != PAUSE and began is not None:  # every process's clock leaves the pause out alike
                control.held_by_pause(time.perf_counter() - began)
            if decision == STOP:
                from tl_studio.core.control import StopRequested

                raise StopRequested()
            if decision == CONTINUE:
                return
            if began is None:
                began = time.perf_counter()
            time.sleep(PAUSE_POLL_SECONDS)  # paused: ask rank 0 again shortly

    def _broadcast_int(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.comm_device)
        self.dist.broadcast(tensor, src=0)
        return int(tensor.item())

    # ---- reduction ------------------------------------------------------------------------------
    def reduce_totals(self, totals):
        """Sums, counts and sample probabilities from every process: the epoch's numbers over all images."""
        values = torch.tensor([totals.loss_sum, float(totals.correct), float(totals.seen), totals.seconds],
                              dtype=torch.float64, device=self.comm_device)
        seconds = values[3:].clone()
        self.dist.all_reduce(values)
        self.dist.all_reduce(seconds, op=self.dist.ReduceOp.MAX)
        merged = {}
        if _any_probabilities(self, totals):
            for part in self.gather_objects({k: v.cpu() for k, v in totals.probabilities.items()}):
                merged.update(part)
        return dataclasses.replace(totals, loss_sum=float(values[0]), correct=int(values[1]), seen=int(values[2]),
                                   seconds=float(seconds[0]), probabilities=merged)

    def reduce_count(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.comm_device)
        self.dist.all_reduce(tensor)
        return int(tensor.item())

    def gather_objects(self, value) -> list:
        parts = [None] * self.world_size
        self.dist.all_gather_object(parts, value)
        return parts

    def gather_features(self, feature_set):
        """Each process computed features for its share of the images; every process gets all of
        them, in image order, so each trains the same head on the same rows."""
        from tl_studio.core.features import FeatureSet

        device = feature_set.features.device
        local = (feature_set.features.cpu(), feature_set.labels.cpu(), feature_set.indices.cpu())
        parts = [p for p in self.gather_objects(local) if p[2].numel()]
        if not parts:
            return feature_set
        indices = torch.cat([p[2] for p in parts])
        order = indices.argsort()
        return FeatureSet(torch.cat([p[0] for p in parts])[order].to(device),
                          torch.cat([p[1] for p in parts])[order].to(device), indices[order])

    def sync_buffers(self, model) -> None:
        """BatchNorm statistics drift apart by a batch per process; validation and checkpoints use
        rank 0's, as DistributedDataParallel does at each forward."""
        for buffer in model.buffers():
            if self.use_cuda or buffer.device.type == "cpu":
                self.dist.broadcast(buffer.data, src=0)

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


class ShardedBatches:
    """The training batches of one process: a seeded shuffle of all ``count`` images (the same on every
    process), every ``world_size``-th one for this process, cut into the same number of batches on
    every process. Every image is seen exactly once per epoch (torch's DistributedSampler repeats a
    few to even the shares, and a process with one batch more would leave the others waiting in its
    gradient exchange); batches differ by at most one image in size."""

    def __init__(self, count: int, batch_size: int, rank: int, world_size: int, seed: int = 0):
        self.count, self.batch_size, self.rank, self.world_size = count, max(1, batch_size), rank, world_size
        self.seed = seed
        self.epoch = 0
        largest_share = -(-count // world_size)
        self.num_batches = max(1, -(-largest_share // self.batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        share = torch.randperm(self.count, generator=generator)[self.rank::self.world_size]
        for part in torch.tensor_split(share, self.num_batches):
            yield part.tolist()


def _wish(control) -> int:
    if control.stop_requested:
        return STOP
    return PAUSE if control.paused else CONTINUE


def _any_probabilities(strategy, totals) -> bool:
    return strategy.reduce_count(len(totals.probabilities)) > 0


def strategy_for(config, distributed: bool):
    """The strategy of this process: torchrun's environment when ``distributed``."""
    if distributed:
        return DistributedProcesses.from_environment(config.device)
    return SingleProcess()
