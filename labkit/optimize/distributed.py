"""Data-parallel training (torch.distributed, gloo on CPU / nccl on GPUs; or Accelerate), the choice of
backend, and the float64 reference run that sets the check's tolerance."""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import OptimizeError


@dataclass
class DPJob:
    """One data-parallel training job: a saved HF model, pre-tokenized rows, and the recipe.

    Rows [s*B, (s+1)*B) form the global batch of step s; with W processes, rank r takes the r-th
    contiguous slice of B/W rows. Dropout is switched off so every run is deterministic. `dtype`
    "float64" runs the same job in double precision: the nearly exact reference that measures how far
    float32 rounding alone moves the weights (the tolerance of the data-parallel check).
    """
    model_dir: str
    data_file: str
    steps: int = 5
    global_batch: int = 16
    lr: float = 1e-3
    out_file: str = ""
    threads_per_process: int = 1
    dtype: str = "float32"


def _load_for_training(job: DPJob):
    from transformers import AutoModelForSequenceClassification

    if job.dtype not in ("float32", "float64"):
        raise OptimizeError(f"DPJob.dtype must be 'float32' or 'float64', got {job.dtype!r}")
    model = AutoModelForSequenceClassification.from_pretrained(job.model_dir, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)
    model.to(getattr(torch, job.dtype)).train()
    return model, torch.load(job.data_file)


def _step_batch(data: dict[str, torch.Tensor], step: int, job: DPJob, rank: int, world: int):
    lo = step * job.global_batch
    part = job.global_batch // world
    sl = slice(lo + rank * part, lo + (rank + 1) * part)
    return {k: v[sl] for k, v in data.items()}


def train_reference(job: DPJob) -> dict[str, torch.Tensor]:
    """The single-process run on the full global batch: what data parallelism must reproduce.

    >>> state = train_reference(DPJob(model_dir, data_file, steps=3))     # doctest: +SKIP
    """
    torch.manual_seed(0)
    model, data = _load_for_training(job)
    opt = torch.optim.AdamW(model.parameters(), lr=job.lr)
    for s in range(job.steps):
        loss = model(**_step_batch(data, s, job, 0, 1)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def dp_worker(rank: int, world: int, port: int, job: DPJob, mode: str, backend: str) -> None:
    """Entry point of each spawned process (importable, so `torch.multiprocessing.spawn` finds it)."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(job.threads_per_process)
    torch.manual_seed(0)
    model, data = _load_for_training(job)
    step_s = []
    if mode == "accelerate":
        from accelerate import Accelerator

        acc = Accelerator(cpu=backend == "gloo")
        opt = torch.optim.AdamW(model.parameters(), lr=job.lr)
        model, opt = acc.prepare(model, opt)
        device = acc.device
        for s in range(job.steps):
            t0 = time.perf_counter()
            batch = {k: v.to(device) for k, v in _step_batch(data, s, job, acc.process_index, acc.num_processes).items()}
            loss = model(**batch).loss
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_s.append(time.perf_counter() - t0)
        state = acc.unwrap_model(model).state_dict()
        is_main = acc.is_main_process
    else:
        dist.init_process_group(backend, rank=rank, world_size=world)
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        if backend == "nccl":
            torch.cuda.set_device(device)
        model.to(device)
        # DDP broadcasts rank 0's weights, then all-reduces (averages) gradients in buckets while
        # backward is still running, so communication overlaps with computation.
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if backend == "nccl" else None)
        opt = torch.optim.AdamW(ddp.parameters(), lr=job.lr)
        for s in range(job.steps):
            t0 = time.perf_counter()
            batch = {k: v.to(device) for k, v in _step_batch(data, s, job, rank, world).items()}
            loss = ddp(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_s.append(time.perf_counter() - t0)
        state = model.state_dict()
        is_main = rank == 0
    if is_main:
        torch.save({"state": {k: v.detach().cpu() for k, v in state.items()}, "step_s": step_s}, job.out_file)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def choose_backend(backend: str = "gloo", world: int = 0) -> tuple[str, int, str]:
    """The backend and process count a data-parallel run can really use here, and a note when they
    differ from what was asked (empty otherwise).

    `world = 0` means one process per visible GPU. NCCL needs CUDA GPUs: where torch sees none (a
    CPU-only build, a laptop) the run falls back to gloo on the CPU with `world` processes, or 2 when
    `world` is 0, so the gpu profile's settings still run, and say so. Asking NCCL for more
    processes than there are GPUs is an error.

    >>> choose_backend("gloo", 2)
    ('gloo', 2, '')
    """
    if backend not in ("gloo", "nccl"):
        raise OptimizeError(f"backend must be 'gloo' (CPU) or 'nccl' (GPUs), got {backend!r}")
    if world < 0:
        raise OptimizeError(f"world must be >= 0 (0: one process per visible GPU), got {world}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if backend == "nccl":
        import torch.distributed as dist

        if gpus == 0 or not dist.is_nccl_available():
            n = world or 2
            return "gloo", n, (f"nccl needs CUDA GPUs and torch sees none here: falling back to gloo with {n} "
                               "processes on the CPU")
        if world > gpus:
            raise OptimizeError(f"nccl needs one GPU per process: {world} asked, {gpus} visible "
                                "(ddp_world = 0 takes one process per visible GPU)")
        return "nccl", world or gpus, ""
    if world == 0:
        n = gpus or 2
        return "gloo", n, f"world 0 with gloo: {n} processes ({'one per visible GPU' if gpus else 'no GPU visible'})"
    return "gloo", world, ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_data_parallel(job: DPJob, world: int = 2, mode: str = "ddp", backend: str = "gloo") -> dict[str, Any]:
    """Train `job` on `world` processes; returns {"state", "step_s", "seconds"} of rank 0.

    `mode="ddp"`: torch DistributedDataParallel; `mode="accelerate"`: the same loop through
    Hugging Face Accelerate. `backend="gloo"` on CPU, `"nccl"` on GPUs (one process per GPU).

    >>> out = run_data_parallel(job, world=2, mode="ddp")     # doctest: +SKIP
    """
    import torch.multiprocessing as mp

    if mode not in ("ddp", "accelerate"):
        raise OptimizeError(f"mode must be 'ddp' or 'accelerate', got {mode!r}")
    if backend not in ("gloo", "nccl"):
        raise OptimizeError(f"backend must be 'gloo' (CPU) or 'nccl' (GPUs), got {backend!r}")
    if backend == "nccl" and torch.cuda.device_count() < world:
        raise OptimizeError(f"nccl needs one GPU per process: {world} asked, {torch.cuda.device_count()} visible")
    if job.global_batch % world:
        raise OptimizeError(f"global_batch {job.global_batch} must be divisible by world {world}")
    out = job.out_file or str(Path(tempfile.mkdtemp()) / f"{mode}.pt")
    job = DPJob(**{**job.__dict__, "out_file": out})
    t0 = time.perf_counter()
    mp.spawn(dp_worker, args=(world, _free_port(), job, mode, backend), nprocs=world, join=True)
    res = torch.load(out)
    res["seconds"] = time.perf_counter() - t0
    return res


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| over all tensors of two state dicts (same keys required).

    >>> max_abs_diff({"w": torch.zeros(2)}, {"w": torch.ones(2)})
    1.0
    """
    if set(a) != set(b):
        raise OptimizeError(f"state dicts differ in keys: {sorted(set(a) ^ set(b))[:5]}")
    # in float64, so that a float64 reference is not rounded to float32 before the comparison
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())
