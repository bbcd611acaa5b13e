import sys

from speechdistill.cli import main

sys.exit(main())
