"""The atlas: which versions work together, generated from runs.

_plan.py (plan.json: the picks of each axis by _releases.py's rule, the stacks of
_pairwise.py), _runs.py (the plan's stacks chosen and run through the user-stack command,
each outcome beside its results), _table.py (report/atlas.json and its markdown table from
those results), _cli.py (the command line).
"""

from ._cli import main

__all__ = ["main"]
