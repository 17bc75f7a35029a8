"""``python -m tl_studio`` and the frozen app's entry script (packaging/tl_studio.spec)."""

import sys

from tl_studio.entry import main

if __name__ == "__main__":
    sys.exit(main())
