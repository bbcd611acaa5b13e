"""``python -m data_prep.mini_en``: see :mod:`data_prep.mini_en.cli`."""

import sys

from data_prep.mini_en.cli import main

sys.exit(main())
