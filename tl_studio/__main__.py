"""``python -m tl_studio``."""

import sys

from tl_studio.entry import main

if __name__ == "__main__":
    sys.exit(main())
