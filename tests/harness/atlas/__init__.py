"""The atlas: which versions work together, generated from runs.

_runs.py (the plan read, its stacks chosen and run through the user-stack command, each
outcome beside its results), _table.py (report/atlas.json and its markdown table from
those results), _cli.py (the command line).
"""

from ._cli import main

__all__ = ["main"]
