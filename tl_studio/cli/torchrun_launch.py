"""``tl-studio train ... --nproc-per-node N``: the same training in N processes, started by PyTorch's
own launcher (torchrun, ``python -m torch.distributed.run``), each running ``tl-studio train`` again as
a worker (core/strategy.py: DistributedProcesses; rank 0 writes the run folder).

This process checks what the user can get wrong before anything starts (the data, the output folder),
starts torchrun in its own session (so the terminal's Ctrl-C reaches this process only), turns the
first Ctrl-C into a stop request in the run folder (the run stops after the current batch on every
process and writes its model file) and the second into the end of the process tree, and, when a
process was killed, records in status.json why the run ended. Its exit status is the run's, as one
process would give it: 0 done, 130 stopped, 2 failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

# The launcher's own flags: passed to torchrun, never to the worker processes.
LAUNCH_FLAGS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port")
WORKER_FLAG = "--distributed-worker"
ABORT_GRACE_SECONDS = 30


def add_arguments(parser) -> None:
    group = parser.add_argument_group("several processes (torchrun)")
    group.add_argument("--nproc-per-node", type=int, metavar="N",
                       help="train in N processes on this machine (CUDA: one GPU each; CPU: --device cpu)")
    group.add_argument("--nnodes", type=int, metavar="K", help="machines taking part (default 1)")
    group.add_argument("--node-rank", type=int, metavar="R", help="this machine's number, 0 to K-1")
    group.add_argument("--master-addr", help="address of machine 0 (several machines)")
    group.add_argument("--master-port", type=int, help="a free port on machine 0 (default 29500)")
    parser.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)  # set by the launcher


def wants_several_processes(args) -> bool:
    return not args.distributed_worker and ((args.nproc_per_node or 1) > 1 or (args.nnodes or 1) > 1)


def check_arguments(args) -> None:
    from tl_studio.core.errors import UserError

    nproc = 1 if args.nproc_per_node is None else args.nproc_per_node
    nnodes = 1 if args.nnodes is None else args.nnodes
    if nproc < 1 or nnodes < 1:
        raise UserError("--nproc-per-node and --nnodes must be 1 or more.")
    if nnodes > 1 and (args.node_rank is None or not args.master_addr):
        raise UserError("Several machines need --node-rank (0 to K-1) and --master-addr (machine 0's address) "
                        "on every machine.")
    if args.node_rank is not None and not 0 <= args.node_rank < nnodes:
        raise UserError(f"--node-rank must be between 0 and {nnodes - 1}.")


def worker_argv(argv: list[str]) -> list[str]:
    """The command line without the launcher's flags, marked as a worker's."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = "=" not in item
            continue
        kept.append(item)
    return [*kept, WORKER_FLAG]


def torchrun_command(args, worker_args: list[str]) -> list[str]:
    nproc, nnodes = args.nproc_per_node or 1, args.nnodes or 1
    launcher = "torch.distributed.run" if os.environ.get("TL_STUDIO_DEBUG") else "tl_studio.cli.torchrun_quiet"
    command = [sys.executable, "-m", launcher, "--nproc-per-node", str(nproc),
               "--max-restarts", "0", "--monitor-interval", "1"]
    if nnodes == 1 and not args.master_addr:
        command.append("--standalone")  # a free port on this machine, chosen by torchrun
    else:
        command += ["--nnodes", str(nnodes), "--node-rank", str(args.node_rank or 0),
                    "--master-addr", args.master_addr or "127.0.0.1", "--master-port", str(args.master_port or 29500)]
    return [*command, "-m", "tl_studio", "train", *worker_args]


def worker_environment(nproc: int, device: str) -> dict:
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        # CPU processes share the cores out (torchrun would set 1 thread each, with a warning); GPU
        # processes need few CPU threads of their own
        cores = os.cpu_count() or 1
        env["OMP_NUM_THREADS"] = str(max(1, cores // nproc) if _on_cpu(device) else 1)
    return env


def _on_cpu(device: str) -> bool:
    if device != "auto":
        return device == "cpu"
    import torch

    return not torch.cuda.is_available()


def launch(args, argv: list[str], device: str = "auto") -> int:
    """Runs the training in several processes and returns the command's exit status."""
    from tl_studio.core.run_folder import LAST_CHECKPOINT, RunFolder
    from tl_studio.core.strategy import check_a_gpu_is_here

    check_a_gpu_is_here(device)  # before any process starts: each said it, and torchrun ended the others

    folder = RunFolder(Path(args.out))
    first_machine = (args.node_rank or 0) == 0  # the one whose rank 0 writes the run folder
    if first_machine:
        folder.check_new_run(resume=args.resume, overwrite=args.overwrite)
        if args.resume and not folder.file(LAST_CHECKPOINT).is_file():
            from tl_studio.core.errors import UserError

            raise UserError(f"{args.out} holds no checkpoint to resume; start a new run without --resume.")
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.clear_requests()
    command = torchrun_command(args, worker_argv(argv))
    nproc = args.nproc_per_node or 1
    process = subprocess.Popen(command, env=worker_environment(nproc, device), start_new_session=True)
    interrupts = 0

    def on_interrupt(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print("\nStopping after the current batch (Ctrl-C again to stop at once)...", file=sys.stderr)
            if first_machine:
                folder.request("stop")
            else:
                _end_process_tree(process)  # the other machines end through torchrun
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _end_process_tree(process)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        returncode = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if not first_machine:
        return 0 if returncode == 0 else 2
    return _outcome(folder, args, returncode, aborted=interrupts > 1)


def _end_process_tree(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)  # torchrun ends its workers on SIGTERM
    except ProcessLookupError:
        return
    try:
        process.wait(ABORT_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _wait_for_unlock(folder, seconds: float = 15.0) -> None:
    """A killed rank 0's data-loader workers (forked: they share its lock) end a moment after it."""
    import time

    deadline = time.monotonic() + seconds
    while folder.is_locked() and time.monotonic() < deadline:
        time.sleep(0.2)


def _outcome(folder, args, returncode: int, aborted: bool) -> int:
    from tl_studio.core.run_folder import LAST_CHECKPOINT

    if aborted:
        _wait_for_unlock(folder)
        folder.mark_ended("Stopped at once (Ctrl-C twice); continue with --resume.")
        print("tl-studio train: interrupted", file=sys.stderr)
        return 130
    if returncode != 0:
        _wait_for_unlock(folder)
        then = ("continue with --resume" if folder.file(LAST_CHECKPOINT).is_file()
                else "no epoch had finished, so start it again")
        folder.mark_ended(f"A training process ended unexpectedly (torchrun exit status {returncode}) and the "
                          f"others were ended; {then}.")
    status = folder.status()
    if status is None:
        print(f"tl-studio train: the training processes ended (exit status {returncode}) before the run started.",
              file=sys.stderr)
        return 2
    if status.state == "done":
        if not args.json:
            print(status.reason)
        return 0
    if status.state == "stopped":
        if status.epochs_done == 0:
            from tl_studio.core.wording import STOPPED_IN_FIRST_EPOCH

            print(STOPPED_IN_FIRST_EPOCH, file=sys.stderr)
        else:
            print(f"Stopped after epoch {status.epochs_done}. The last checkpoint is in {args.out}; continue with: "
                  f"tl-studio train {shlex.quote(args.data_dir)} --out {shlex.quote(args.out)} --resume "
                  f"--nproc-per-node {args.nproc_per_node or 1}", file=sys.stderr)
        return 130
    print(f"tl-studio train: {status.reason}", file=sys.stderr)
    return 2
