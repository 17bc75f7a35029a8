import sys

from tl_studio.entry import main

sys.exit(main())
