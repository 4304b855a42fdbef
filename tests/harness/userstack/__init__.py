"""A user's stack: its cells beside the model, for the versions the user runs.

The command line and its steps: _cli.py; the server environment: _env.py.
"""

from ._cli import main

__all__ = ["main"]
