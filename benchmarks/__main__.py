"""``python -m benchmarks``: the whole suite (see benchmarks/suite/runner.py and benchmarks/README.md)."""

import sys

from benchmarks.suite.runner import main

sys.exit(main())
