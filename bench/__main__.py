"""`python -m bench`: run the whole suite and write bench/results/."""

import sys

from bench.run import main

sys.exit(main())
