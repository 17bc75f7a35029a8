"""The ``tl-studio`` console entry point: the app or a command.

``tl-studio`` alone and ``tl-studio gui [DATA_DIR]`` open the app; ``tl-studio MODEL.pt2`` (or
``.onnx``: what a file manager runs when the user opens a model file with TL Studio) opens the app on
the Predict step with that model; anything else is a command of ``tl_studio.cli``. Dispatching here
keeps the CLI and the GUI from importing each other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Model files a desktop hands to the app (the MIME associations of packaging/linux/).
MODEL_FILE_SUFFIXES = (".pt2", ".onnx")


def model_file_argument(argv: list[str]) -> str | None:
    """The model file when argv is ``[FILE]`` or ``["gui", FILE]`` naming an existing .pt2/.onnx."""
    rest = argv[1:] if argv[:1] == ["gui"] else argv
    if len(rest) == 1 and rest[0].lower().endswith(MODEL_FILE_SUFFIXES) and Path(rest[0]).is_file():
        return rest[0]
    return None


def main(argv: list[str] | None = None) -> int:
    # In a frozen app (PyInstaller) the data-loader workers, the fork server and the resource tracker
    # are this same executable started again with multiprocessing's arguments: freeze_support()
    # recognises them, runs the child's work and exits. Outside a frozen app it does nothing, and
    # importing multiprocessing for it would cost every command's start ~10 ms (`tl-studio scan`).
    if getattr(sys, "frozen", False):
        import multiprocessing

        multiprocessing.freeze_support()
    argv = sys.argv[1:] if argv is None else list(argv)
    model_file = model_file_argument(argv)
    gui = not argv or argv[0] == "gui" or model_file
    if gui and "-h" not in argv and "--help" not in argv:
        from tl_studio.gui.display import missing_display

        if reason := missing_display():
            print(f"tl-studio: {reason}", file=sys.stderr)
            return 2
    if gui and (model_file or os.environ.get("TL_STUDIO_CLOSE_AFTER_START")):
        from tl_studio.gui.launch import main as launch_main

        return launch_main([] if model_file else argv[1:], model_file)
    if gui:
        from tl_studio.gui.app import main as gui_main

        return gui_main(argv[1:])
    from tl_studio.cli.main import main as cli_main

    return cli_main(argv, owns_the_process=True)


if __name__ == "__main__":
    sys.exit(main())
