"""The ``tl-studio`` console entry point: the app or a command.

``tl-studio`` alone and ``tl-studio gui [DATA_DIR]`` open the app; anything else is a command of
``tl_studio.cli``. Dispatching here keeps the CLI and the GUI from importing each other.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] == "gui":
        from tl_studio.gui.app import main as gui_main

        return gui_main(argv[1:])
    from tl_studio.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
