"""Your stack: the cells, the model and the causes for the versions a user runs.

    python -m tests.harness.userstack -r requirements.txt [--python X.Y] [--predict]
    python -m tests.harness.userstack Flask==1.1.4 gevent==20.9.0 [--python X.Y] [--predict]
    python -m tests.harness.userstack --upgrade -r requirements.txt NAME[==VERSION] ... [--predict]

1. the pins that matter are taken from the file as pip reads it (the others are listed
   as ignored, with why): _request.py;
2. each exact pin is checked against the registry (a release that does not exist is
   an error, and so is a name it does not have that is close to one the stack depends
   on), and the newest upload among them dates the stack's era: _registry.py,
   _era.py;
3. a Python is chosen (``--python``, else this interpreter if the pins have it, else the
   newest one here that every pinned binary release has a wheel for) and found the way
   the seed's 2.7 is (tests/harness/pythons.py): _era.py;
4. what the file leaves out is filled in by a resolver: ``uv pip compile`` for that
   Python with ``--exclude-newer`` the era's date (so greenlet is one the pinned gevent
   could have been built against, Jinja2 one of that Flask's time); on CPython 2.7,
   which uv cannot target, pip resolves, capped at the era's releases by constraints;
   every choice is printed with its reason: _resolve.py;
5. the environment is built in a temporary directory and renamed into place only once
   complete; the gevent-websocket release is the verified sdist, vanilla and, where
   ``patches/gevent-websocket/<version>/`` exists, patched; pins naming gevent-ws or
   flask-sock instead are served by that handler ([tool.handlers]: one build, its files
   checked against pyproject.toml's or the registry's sha256); each pin installed at the
   file's release is checked against the file's hashes, and the others are named: _env.py;
6. the cells run (tests/matrix/test_cells.py, agent on/off x vanilla/patched, or agent
   on/off on the other handler) and the grid is printed beside the model's prediction,
   with the causes: _run.py, _predict.py.

``--predict`` stops after step 1: the model's grid from the pins alone, asking the
registry only about a name close to one the stack depends on (_predict.py).  Bad input
is one line ``error: <cause>; <fix>`` and exit status 2 (_errors.py).
``--upgrade``: the file's stack, then the same with the named pins moved, and what
changes between them; exit status 1 if an observation gets worse (_upgrade.py).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..paths import CACHE, RESULTS
from ._era import this_python
from ._errors import EXIT_BAD_INPUT, StackError
from ._predict import run_predict
from ._registry import Registry
from ._request import check_names, from_args
from ._run import serve
from ._upgrade import upgrade


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.userstack", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "pins",
        nargs="*",
        metavar="NAME==VERSION",
        help="the stack's pins; with --upgrade, the pins of the file to move "
        "(NAME: to its newest release)",
    )
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="run the file's stack as pinned and with the named pins moved, "
        "and print what changes (exit 1: something gets worse)",
    )
    parser.add_argument("-r", "--requirement", metavar="FILE")
    parser.add_argument(
        "--python",
        metavar="X.Y",
        help="the Python the server runs on (default: this one, if the pins admit it)",
    )
    parser.add_argument(
        "--predict",
        action="store_true",
        help="the model's grid and causes only: build and run nothing",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=CACHE / "stacks",
        help="where environments are built (kept: a second run reuses them)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where each arm's SessionResults go, beside every session's "
        "(nox passes MATRIX_RESULTS)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="arms run at once")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.upgrade and not args.requirement:
            raise StackError(
                "--upgrade moves the pins of a requirements file: pass -r FILE "
                "and the packages to move, NAME or NAME==VERSION"
            )
        request = from_args([] if args.upgrade else args.pins, args.requirement)
        if args.python and not re.fullmatch(r"\d+\.\d+", args.python):
            raise StackError(
                f"--python {args.python!r} is not a version X.Y; name one, e.g. --python 3.8"
            )
        if args.upgrade:
            return upgrade(
                request,
                Path(args.requirement),
                args.pins,
                predict=args.predict,
                python=args.python,
                work=args.work,
                results=args.results,
                jobs=args.jobs,
            )
        if args.predict:
            # The markers are read for the Python asked for, else this one: --predict
            # chooses none (that needs the registry).
            if request.conditional:
                print(
                    f"note: environment markers read for Python {args.python or this_python()}"
                    f"{'' if args.python else ' (this one; name another with --python)'}"
                )
            request = request.for_python(args.python or this_python())
            check_names(request, Registry(), everything=False)
            for line in request.ignored:
                print(f"ignored: {line}")
            return run_predict(request)
        served = serve(request, args.python, args.work, args.results, args.jobs, started)
    except StackError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    return 1 if served.failed else 0
