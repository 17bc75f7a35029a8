"""``tl-studio cluster-script DATA_DIR --out RUN_DIR [train flags] --nodes K --gpus-per-node G``: a SLURM
batch script that runs the same training on K machines with G GPUs each (srun starts one
``tl-studio train --nproc-per-node G`` per machine, which starts torchrun), and picks the run up again
when SLURM requeues the job (a node failed, or the time limit came: the script asks for a requeue two
minutes before it). Submit it with ``sbatch``. The data and the run folder must be on storage every
machine sees.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from tl_studio.cli import cmd_train, config_flags
from tl_studio.core.wording import counted

# train's flags the script sets itself (the machines, the rendezvous, resuming) or that do not apply
NOT_PASSED = {"data_dir", "out", "resume", "overwrite", "distributed_worker", "nproc_per_node", "nnodes",
              "node_rank", "master_addr", "master_port", "help"}
REQUEUE_WARNING_SECONDS = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train = argparse.ArgumentParser(add_help=False)
    cmd_train.add_arguments(train)
    for action in train._actions:  # train's own flags, the same table (minus the launcher's)
        if action.dest not in {"nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port",
                               "resume", "overwrite", "help"}:
            if action.dest == "out":  # every machine writes to it: named, never a default in one's home
                action.required, action.help = True, "run folder, on a file system every machine reaches"
            parser._add_action(action)
    group = parser.add_argument_group("the cluster")
    group.add_argument("--nodes", type=int, default=1, metavar="K", help="machines (default 1)")
    group.add_argument("--gpus-per-node", type=int, default=1, metavar="G", help="GPUs on each machine (default 1)")
    group.add_argument("--cpus-per-gpu", type=int, default=4, help="CPU cores per GPU for image loading (default 4)")
    group.add_argument("--time", default="24:00:00", type=slurm_time,
                       help="SLURM time limit per job attempt: minutes, H:M:S or D-H:M:S (default 24:00:00)")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--account", help="SLURM account")
    group.add_argument("--job-name", default="tl-studio", help="SLURM job name (default tl-studio)")
    group.add_argument("--script", metavar="FILE", help="write the script to FILE (default: print it)")


# the forms sbatch's --time takes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, and no limit
SLURM_TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|unlimited|infinite", re.IGNORECASE)


def slurm_time(text: str) -> str:
    """--time as sbatch takes it; anything else is refused here, not hours later when the job is queued."""
    if not SLURM_TIME.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SLURM time limit; give minutes (90), H:M:S (24:00:00) "
                                         f"or D-H:M:S (2-00:00:00)")
    return text.strip()


def train_flags(args: argparse.Namespace) -> list[str]:
    """The train flags the user gave, as a command line (flags left at their default are left out)."""
    parser = argparse.ArgumentParser(add_help=False)
    cmd_train.add_arguments(parser)
    flags = []
    for action in parser._actions:
        if not action.option_strings or action.dest in NOT_PASSED:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreConstAction)):
            flags.append(flag)
        else:
            flags += [flag, str(value)]
    return flags


def render(args: argparse.Namespace) -> str:
    from tl_studio import __version__
    from tl_studio.core.run_folder import LAST_CHECKPOINT

    data = str(Path(args.data_dir).resolve())
    run = str(Path(args.out).resolve())
    quote = shlex.quote
    train = " ".join(quote(part) for part in ["train", data, "--out", run, *train_flags(args)])
    # run by bash on each machine, where $SLURM_NODEID is that machine's number
    on_each_node = (f'exec $TL_STUDIO {train} --nproc-per-node {args.gpus_per_node} --nnodes "$SLURM_NNODES" '
                    f'--node-rank "$SLURM_NODEID" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" '
                    f'$RESUME_FLAG')
    optional = "".join(f"#SBATCH --{name}={quote(value)}\n" for name, value in
                       (("partition", args.partition), ("account", args.account)) if value)
    return f"""#!/bin/bash
# Written by `tl-studio cluster-script` (TL Studio {__version__}). Submit with: sbatch {args.script or 'THIS_FILE'}
# Trains on {counted(args.nodes, 'machine')} x {counted(args.gpus_per_node, 'GPU')}: srun starts
# `tl-studio train --nproc-per-node {args.gpus_per_node}` on each machine, which starts torchrun.
# When SLURM requeues the job (a node failed, or the time limit is {REQUEUE_WARNING_SECONDS} s away),
# the next attempt continues the run with --resume.
#SBATCH --job-name={quote(args.job_name)}
#SBATCH --nodes={args.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={args.gpus_per_node}
#SBATCH --cpus-per-task={args.cpus_per_gpu * args.gpus_per_node}
#SBATCH --time={quote(args.time)}
#SBATCH --requeue
#SBATCH --signal=B:USR1@{REQUEUE_WARNING_SECONDS}
#SBATCH --open-mode=append
{optional}
set -euo pipefail
TL_STUDIO=${{TL_STUDIO:-{quote(sys.executable)} -m tl_studio}}
RUN={quote(run)}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))

# A requeued attempt continues from the last finished epoch.
RESUME_FLAG=
if [ -f "$RUN/{LAST_CHECKPOINT}" ]; then
  RESUME_FLAG=--resume
  echo "Attempt ${{SLURM_RESTART_COUNT:-0}}: resuming the run in $RUN"
fi
export TL_STUDIO RUN MASTER_ADDR MASTER_PORT RESUME_FLAG

# The time limit is near: requeue this job; the next attempt resumes.
requeue() {{
  echo "Time limit near: requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
}}
trap requeue USR1

srun --kill-on-bad-exit=1 bash -c {quote(on_each_node)} &
wait $!
"""


def run(args: argparse.Namespace) -> int:
    from tl_studio.core.errors import UserError

    if args.nodes < 1 or args.gpus_per_node < 1:
        raise UserError("--nodes and --gpus-per-node must be 1 or more.")
    if not Path(args.data_dir).is_dir():
        raise UserError(f"{args.data_dir} is not a folder; give the dataset folder (one sub-folder per class).")
    # the training settings are checked here, where a mistake costs a second, not a place in the queue
    config_flags.build_config(args, cmd_train.SETTINGS)
    text = render(args)
    if not args.script:
        sys.stdout.write(text)
        return 0
    path = Path(args.script)
    if path.exists():
        raise UserError(f"{path} already exists; choose another --script file or remove it first.")
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    print(f"Wrote {path}; submit it with: sbatch {path}", file=sys.stderr)
    return 0

