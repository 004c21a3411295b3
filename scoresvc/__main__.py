"""`python -m scoresvc`: the command line."""

import sys

from scoresvc.serving.cli import main

sys.exit(main())
