"""The frozen app's entry script (packaging/tl_studio.spec).

It lives outside the ``tl_studio`` package on purpose: PyInstaller then analyses the copy of TL Studio
installed in the build venv (as the wheel installs it, ``tl_studio.resources`` included) rather than
the source tree, whose resources sit outside the package.
"""

import sys

from tl_studio.entry import main

if __name__ == "__main__":
    sys.exit(main())
