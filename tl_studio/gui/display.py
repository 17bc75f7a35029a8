"""Whether a window can open here at all, asked before Qt is: on Linux and the BSDs Qt needs an X11 or
Wayland display, and without one (a shell over SSH without X forwarding, a server) it aborts the
process (SIGABRT) with its own lines, which end in "Reinstalling the application may fix this problem"
- advice that does not help. Nothing from Qt is imported here."""

from __future__ import annotations

import os
import sys

# Systems whose Qt draws through X11 or Wayland (Windows and macOS always have their own display).
_NEEDS_X11_OR_WAYLAND = ("linux", "freebsd", "openbsd", "netbsd")


def missing_display() -> str | None:
    """One sentence when no window can be opened here, else None."""
    if not sys.platform.startswith(_NEEDS_X11_OR_WAYLAND):
        return None
    if os.environ.get("QT_QPA_PLATFORM"):  # a platform chosen on purpose: offscreen, vnc, eglfs...
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("No display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set, as in a shell over "
            "SSH without X forwarding): start TL Studio on the desktop (or connect with `ssh -X`), or use its "
            "commands here: `tl-studio --help` lists them.")
