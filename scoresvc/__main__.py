"""`python -m scoresvc`: the command line."""

import sys

from scoresvc.cli import main

sys.exit(main())
