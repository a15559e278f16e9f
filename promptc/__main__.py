"""`python -m promptc` runs the CLI."""

import sys

from promptc.cli import main

sys.exit(main())
