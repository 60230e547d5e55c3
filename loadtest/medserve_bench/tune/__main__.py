"""``python -m medserve_bench.tune``: the same as ``medserve tune``."""

import sys

from medserve_bench.tune.cli import main

sys.exit(main())
