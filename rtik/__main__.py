"""``python -m rtik`` = the ``rtik`` command."""

import sys

from rtik.cli import main

sys.exit(main())
