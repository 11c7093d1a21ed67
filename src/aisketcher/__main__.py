"""`python -m aisketcher` runs the command line (also `torchrun -m aisketcher train ...`)."""

import sys

from aisketcher.cli import main

sys.exit(main())
