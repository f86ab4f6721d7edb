"""``python -m pipeline_bench``."""

import sys

from pipeline_bench.cli import main

sys.exit(main())
