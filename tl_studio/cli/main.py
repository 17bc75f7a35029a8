"""The ``tl-studio`` command. With no arguments it opens the GUI.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``.
Those modules import only the standard library at import time, so ``tl-studio --help``, ``scan`` and
``models`` start fast; torch is imported inside the commands that need it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util  # find_spec: "import importlib" alone does not load it in a plain install
import sys

from tl_studio import __version__

# Handled by tl_studio.entry before this parser runs; listed so that --help shows it.
GUI_HELP = "open the app, optionally with DATA_DIR loaded (the default with no command)"

# name -> (module under tl_studio.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("cmd_scan", "scan a dataset folder: classes, counts, split and problems"),
    "models": ("cmd_models", "list the available models and whether their weights are offline"),
    "weights": ("cmd_weights", "download or import pretrained weights for a model"),
    "train": ("cmd_train", "train a model on a dataset folder"),
    "export": ("cmd_export", "export a trained run to model.pt2, ONNX, int8 ONNX or TorchScript"),
    "predict": ("cmd_predict", "classify images with a trained model file"),
    "benchmark": ("cmd_benchmark", "size, speed and accuracy of a run's model in every export format"),
    "evaluate": ("cmd_evaluate", "evaluate a trained model file on a dataset"),
    "lr-find": ("cmd_lr_find", "find a good learning rate for a dataset and model"),
    "advise": ("cmd_advise", "recommend freeze depth, learning rate and epochs for a dataset"),
    "cluster-script": ("cmd_cluster_script", "write a SLURM batch script that trains on several GPU machines"),
    "runs": ("cmd_runs", "list, compare and rank training runs (runs diff A B, runs best)"),
}


def _available_commands() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"tl_studio.cli.{module}") is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tl-studio",
        description="TL Studio: transfer learning on images. Run without arguments to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"tl-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("gui", help=GUI_HELP, description=GUI_HELP).add_argument("data_dir", nargs="?")
    for name, (module_name, help_text) in _available_commands().items():
        module = importlib.import_module(f"tl_studio.cli.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module, _parser=command_parser)
    return parser


def main(argv: list[str] | None = None, *, owns_the_process: bool = False) -> int:
    """Runs one command. ``owns_the_process``: this process runs just this command and ends after it
    (the console entry point, tl_studio/entry.py), so the command takes the process-wide settings of
    core/cpu_settings.py; a caller in a longer-lived process (the tests) leaves them alone."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # with the command's usage: the top-level one ("tl-studio [-h] [--version] COMMAND") says nothing of it
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None or args.command == "gui":
        parser.print_help()
        return 2
    from tl_studio.core.cpu_settings import keep_freed_memory, leave_to_the_exit
    from tl_studio.core.errors import UserError

    args._argv = argv  # a command that starts itself again (train in several processes) repeats it
    args._owns_the_process = owns_the_process
    if owns_the_process:
        keep_freed_memory()  # before the first large block: a batch's memory serves the next one
    try:
        return int(args._module.run(args) or 0)
    except UserError as error:
        print(f"tl-studio {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `tl-studio models | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's code for SIGINT, never a traceback
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting changes nothing
        start = "\r\033[K" if sys.stderr.isatty() else ""  # over a progress line the command left behind
        print(f"{start}tl-studio {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if owns_the_process:
            leave_to_the_exit()  # the interpreter's last collection would walk every object torch made


if __name__ == "__main__":
    sys.exit(main())
