"""One GPU per job on a multi-GPU workstation.

`snakemake --cores N --resources gpu=K` lets at most K jobs that declare `gpu=1` run at once,
but Snakemake does not say WHICH GPU a job gets: without more, every job would use cuda:0. Each
GPU job therefore claims a free slot from a pool of lock files (one per GPU, under
.snakemake/gpu_slots/ in the working directory) and sets CUDA_VISIBLE_DEVICES to it before CUDA
starts. The lock is an flock on an open file: the kernel releases it when the job's process ends,
however it ends, so a killed job never leaves a slot taken.

Not used where the scheduler already assigned GPUs (Slurm sets CUDA_VISIBLE_DEVICES for a job
with --gpus), nor where CUDA_VISIBLE_DEVICES is set by hand.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)


LOCK_DIR = Path(".snakemake") / "gpu_slots"


# Stand-in GPU ids (e.g. "0,1") for tests on machines without GPUs, or to restrict the pool.
SLOTS_ENV = "EMPATHY_GPU_SLOTS"


_held: list = []  # open lock files: kept for the life of the process


def machine_gpus() -> list[str]:
    """The GPU ids of this machine: EMPATHY_GPU_SLOTS if set, else the NVIDIA driver's GPUs
    (read without CUDA, which would fix the visible devices of this process too early)."""
    configured = os.environ.get(SLOTS_ENV)
    if configured is not None:
        return [slot.strip() for slot in configured.split(",") if slot.strip()]
    driver = Path("/proc/driver/nvidia/gpus")
    if driver.is_dir():
        return [str(index) for index in range(len(list(driver.iterdir())))]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(index) for index, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU ")]


def assigned_by_scheduler() -> bool:
    return "CUDA_VISIBLE_DEVICES" in os.environ or "SLURM_JOB_ID" in os.environ


def claim(count: int = 1, lock_dir: str | os.PathLike = LOCK_DIR, wait_s: float = 3600.0,
          poll_s: float = 0.5) -> list[str]:
    """Claim `count` free GPUs of this machine (waiting while all are taken, which happens only
    when more GPU jobs run than `--resources gpu=K` allows), set CUDA_VISIBLE_DEVICES to them and
    return their ids; [] when the machine has no GPU."""
    gpus = machine_gpus()
    if not gpus or count <= 0:
        return []
    if count > len(gpus):
        raise RuntimeError(f"the job asks for {count} GPUs, this machine has {len(gpus)} ({', '.join(gpus)})")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        taken = []
        for gpu in gpus:
            handle = open(lock_dir / f"gpu{gpu}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            taken.append((gpu, handle))
            if len(taken) == count:
                break
        if len(taken) == count:
            _held.extend(handle for _, handle in taken)
            ids = [gpu for gpu, _ in taken]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            logger.info("GPU slot(s) %s of %s claimed (CUDA_VISIBLE_DEVICES=%s)", ids, gpus, ",".join(ids))
            return ids
        for _, handle in taken:
            handle.close()  # releases the lock: all-or-nothing, no deadlock between jobs
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU among {', '.join(gpus)} after {wait_s:.0f} s ({lock_dir}); "
                               "run Snakemake with --resources gpu=K, K = number of GPUs")
        time.sleep(poll_s)
