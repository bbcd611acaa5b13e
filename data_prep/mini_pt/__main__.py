"""``python -m data_prep.mini_pt``."""

import sys

from data_prep.mini_pt.cli import main

sys.exit(main())
