"""A user's stack: its cells beside the model, for the versions the user runs.

One module per step (_cli.py runs them and says what each does): _request.py (the pins),
_registry.py and _era.py (the registry, the era, the Python), _resolve.py (the plan: what
the file leaves out), _env.py (the server environment), _run.py (the cells), _predict.py
(the model's grid), _errors.py (one-line errors).
"""

from ._cli import main

__all__ = ["main"]
