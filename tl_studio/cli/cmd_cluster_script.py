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

from tl_studio.cli import cmd_train
from tl_studio.core.wording import counted

# train's flags the script sets itself (the machines, the rendezvous, resuming) or that do not apply
NOT_PASSED = {"data_dir", "out", "resume", "overwrite", "distributed_worker", "nproc_per_node", "nnodes",
              "node_rank", "master_addr", "master_port", "help"}
REQUEUE_WARNING_SECONDS = 120
# the shortest --time taken: the requeue warning comes REQUEUE_WARNING_SECONDS before the limit (SLURM may send it up
# to a minute earlier still), and an attempt must get past start-up and through an epoch before it, or every attempt
# is requeued before it saves anything, for ever
SHORTEST_TIME_SECONDS = 10 * 60


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
                       help="SLURM time limit per job attempt, as sbatch reads it: minutes (90), M:S, H:M:S, D-H, "
                            "D-H:M or D-H:M:S (1-12:00:00), or unlimited; 10 minutes or more (default 24:00:00)")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--account", help="SLURM account")
    group.add_argument("--job-name", default="tl-studio", help="SLURM job name (default tl-studio)")
    group.add_argument("--script", metavar="FILE", help="write the script to FILE (default: print it)")


# the forms sbatch's --time takes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, and no limit
SLURM_TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|unlimited|infinite", re.IGNORECASE)
# what each form's fields are, by (has a day, number of ':'-separated fields): the names the messages use
TIME_FORMS = {(False, 1): "minutes", (False, 2): "minutes:seconds", (False, 3): "hours:minutes:seconds",
              (True, 1): "days-hours", (True, 2): "days-hours:minutes", (True, 3): "days-hours:minutes:seconds"}


def slurm_time(text: str) -> str:
    """--time as sbatch takes it; anything else is refused here, not hours later when the job is queued."""
    if not SLURM_TIME.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SLURM time limit; give minutes (90), H:M:S (24:00:00) "
                                         f"or D-H:M:S (2-00:00:00)")
    return text.strip()


def slurm_seconds(text: str) -> int | None:
    """The limit ``text`` (a slurm_time) sets, in seconds, as SLURM counts it; None for no limit. SLURM adds
    the fields up whatever their size (25:61:00 is 26 h 1 min), rounds seconds up to a whole minute, and
    takes a limit of zero for none."""
    if text.lower() in ("unlimited", "infinite"):
        return None
    days, _, clock = text.rpartition("-")
    fields = [int(field) for field in clock.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S: the hours come first
        hours, minutes, seconds = (fields + [0, 0])[:3]
        hours += 24 * int(days)
    else:  # M, M:S, H:M:S: two fields are minutes and seconds, not hours and minutes
        hours, minutes, seconds = {1: [0, *fields, 0], 2: [0, *fields], 3: fields}[len(fields)]
    minutes_in_all = -(-(((hours * 60) + minutes) * 60 + seconds) // 60)
    return minutes_in_all * 60 or None


def plain_duration(seconds: int) -> str:
    """26 h 1 min, 3 days 4 h: whole minutes (what SLURM counts), days from two on."""
    days, rest = divmod(seconds // 60, 24 * 60) if seconds >= 2 * 86400 else (0, seconds // 60)
    parts = [(days, "days"), (rest // 60, "h"), (rest % 60, "min")]
    return " ".join(f"{value} {unit}" for value, unit in parts if value) or "0 min"


def check_time(text: str) -> None:
    """A limit that leaves an attempt no time to train is refused, saying how SLURM reads what was given
    (1:00 is one minute, not one hour)."""
    from tl_studio.core.errors import UserError

    limit = slurm_seconds(text)
    if limit is None or limit >= SHORTEST_TIME_SECONDS:
        return
    days, _, clock = text.rpartition("-")
    form = TIME_FORMS[(bool(days), clock.count(":") + 1)]
    as_hours = f"{text}:00"  # what a user who wrote H:M usually meant
    meant = slurm_seconds(as_hours) if form == "minutes:seconds" else None
    example = (f"{as_hours} ({plain_duration(meant)}, hours:minutes:seconds)"
               if meant and meant >= SHORTEST_TIME_SECONDS else "2:00:00 (2 h, hours:minutes:seconds)")
    raise UserError(f"--time {text} is {plain_duration(limit)} to SLURM ({form}), and the job asks to be requeued "
                    f"{REQUEUE_WARNING_SECONDS // 60} min before its limit, so every attempt would be requeued before "
                    f"it trained anything; give {plain_duration(SHORTEST_TIME_SECONDS)} or more, e.g. --time "
                    f"{example}.")


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
# --time {args.time}: {time_in_words(args.time)}, as SLURM reads it.
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

    for flag, count in (("--nodes", args.nodes), ("--gpus-per-node", args.gpus_per_node),
                        ("--cpus-per-gpu", args.cpus_per_gpu)):
        if count < 1:
            raise UserError(f"{flag} must be 1 or more (it is {count}).")
    check_time(args.time)
    if not Path(args.data_dir).is_dir():
        raise UserError(f"{args.data_dir} is not a folder; give the dataset folder (one sub-folder per class).")
    check_training(args)
    text = render(args)
    if not args.script:
        sys.stdout.write(text)
        return 0
    path = Path(args.script)
    if path.exists():
        raise UserError(f"{path} already exists; choose another --script file or remove it first.")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:  # no such folder, no permission: one sentence, not a traceback
        raise UserError(f"Cannot write {path} ({error.strerror}); choose a --script file in a folder that "
                        f"exists and you can write to.") from None
    path.chmod(0o755)
    print(f"Wrote {path} ({time_in_words(args.time)}); submit it with: sbatch {path}", file=sys.stderr)
    return 0


def check_training(args: argparse.Namespace) -> None:
    """What `tl-studio train` would refuse on the cluster, refused here with train's own checks, where a
    mistake costs a second, not a place in the queue: the first attempt as a new run, or, when --out
    already holds a last checkpoint, as the --resume the script adds then."""
    from tl_studio.core.catalog import get_model_info
    from tl_studio.core.run_folder import LAST_CHECKPOINT, RunFolder

    folder = RunFolder(args.out)
    resumes = folder.file(LAST_CHECKPOINT).is_file()
    as_train = argparse.Namespace(**{**vars(args), "resume": resumes, "overwrite": False})
    cmd_train.check_out_is_not_in_the_data(as_train, way_out="")
    config = cmd_train.build_config(as_train)  # a resumed run's own settings, its images checked
    # train asks the catalogue only when its file is there (building it imports torchvision, seconds) and
    # leaves the rest to the model build; in the queue that build comes hours later, so ask now
    get_model_info(config.model)
    if config.freeze not in ("all", "none"):  # a depth the model has (train learns it building the model)
        from tl_studio.core.config import parse_freeze, refuse_a_depth_that_freezes_every_stage
        from tl_studio.core.models import build_shapes_only, model_stages

        stages = len(model_stages(build_shapes_only(config.model, 2)))
        parse_freeze(config.freeze, stages)
        if not resumes:  # as train refuses a new run of it
            refuse_a_depth_that_freezes_every_stage(config, stages)
    folder.check_new_run(resume=resumes, overwrite=False)  # a folder of other files, or a run to replace
    if resumes:
        check_the_run_continues(config, args.out)


def check_the_run_continues(config, out: str) -> None:
    """The run in --out, which every attempt continues: not finished already (else each attempt only
    writes its model file again). Its model and the rest of its recipe are train's own check
    (cmd_train.build_config)."""
    from tl_studio.core.errors import UserError

    if finished := cmd_train.finished_already(out, config.epochs):
        raise UserError(finished)


def time_in_words(text: str) -> str:
    limit = slurm_seconds(text)
    return f"time limit {plain_duration(limit)} per attempt" if limit is not None else "no time limit"
