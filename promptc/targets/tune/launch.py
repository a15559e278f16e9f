"""`promptc tune --processes N`: start N copies of the same `promptc tune` command as one data-parallel
job, the way torchrun does on one machine (RANK, WORLD_SIZE, MASTER_ADDR... in each one's environment);
accelerate inside each process joins them into one process group (NCCL on GPUs, gloo on the CPU).

Why not `accelerate launch`: on the CPU, `accelerate launch --cpu --num_processes 2` silently starts one
process (accelerate 1.15). Why not torchrun itself: a failing worker makes it print a Python traceback,
and the gate's exit status 1 is reported as a crash; here rank 0's exit status is the command's.
For several machines, run `torchrun` or `accelerate launch -m promptc tune ...` directly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

WORKER_ENV = "PROMPTC_TUNE_WORKER"


def in_worker() -> bool:
    """True inside a process started by a launcher (ours, torchrun or accelerate)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def end_process_group() -> None:
    """Leave the process group before the interpreter exits. A gloo group still alive at exit tears its
    threads down in C++ static destruction, which aborts the process now and then ("terminate called
    without an active exception", exit status 134/250) after a run that succeeded."""
    if not in_worker():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(argv: list[str], processes: int) -> int:
    """Run `python -m promptc *argv` as `processes` ranks; return rank 0's exit status (or the first
    failing worker's, after stopping the rest: a rank left alone would wait for its peers forever)."""
    port = _free_port()
    procs = []
    for rank in range(processes):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
               "LOCAL_WORLD_SIZE": str(processes), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), WORKER_ENV: "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "promptc", *argv], env=env))
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the workers; they checkpoint and stop
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0) and r != 0]
            if failed:
                _stop(procs)
                return codes[0] if codes[0] not in (None, 0) else failed[0][1]
            if codes[0] is not None:
                _finish(procs[1:], grace=60.0)
                return codes[0]
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, old)


def _finish(procs: list[subprocess.Popen], grace: float) -> None:
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()
