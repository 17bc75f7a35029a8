"""torchrun (``torch.distributed.run``) as the launcher (torchrun_launch.py) starts it, less its own report
of a failure: a process that refused to start (no GPU) or was killed made torchrun log "failed (exitcode:
...)" lines and end with a ChildFailedError traceback of some 40 lines, before the launcher's one sentence
that says what happened. Here those log lines are left out and the exception ends torchrun with the exit
status it would have had (1); the processes' own output, tracebacks of faults included, reaches the user as
before. TL_STUDIO_DEBUG=1 starts torchrun itself instead, its report whole."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun.main(argv)
    except (ChildFailedError, SignalException):  # the launcher's sentence says it (the run folder knows why)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
