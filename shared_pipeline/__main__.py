"""`python -m shared_pipeline`: see cli.py."""

import sys

from shared_pipeline.cli import main

sys.exit(main())
