"""``python -m tests.harness.atlas``: runs the command line (_cli.py).

A module of its own, so that running the package imports each of its modules once, by
name: nothing is defined a second time in ``__main__``.
"""

import sys

from ._cli import main

sys.exit(main())
