"""Your stack: the cells, the model and the causes for the versions a user runs.

    python -m tests.harness.userstack -r requirements.txt [--python X.Y] [--predict]
    python -m tests.harness.userstack Flask==1.1.4 gevent==20.9.0 [--python X.Y] [--predict]

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
   ``patches/gevent-websocket/<version>/`` exists, patched; each pin installed at the
   file's release is checked against the file's hashes, and the others are named: _env.py;
6. the cells run (tests/matrix/test_cells.py, agent on/off x vanilla/patched) and the grid
   is printed beside the model's prediction, with the causes: _run.py, _predict.py.

``--predict`` stops after step 1: the model's grid from the pins alone, asking the
registry only about a name close to one the stack depends on (_predict.py).  Bad input
is one line ``error: <cause>; <fix>`` and exit status 2 (_errors.py).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..builds import PATCHES
from ..paths import CACHE, RESULTS
from ._env import build
from ._era import this_python
from ._errors import EXIT_BAD_INPUT, StackError
from ._predict import prediction_grid, print_grid, run_predict
from ._registry import Registry
from ._request import GWS, MATTERS, check_names, from_args
from ._resolve import describe, make_plan
from ._run import observed_grid, run_cells, session_name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.userstack",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("pins", nargs="*", metavar="NAME==VERSION")
    parser.add_argument("-r", "--requirement", metavar="FILE")
    parser.add_argument("--python", metavar="X.Y", help="the Python the server runs on "
                        "(default: this one, if the pins admit it)")
    parser.add_argument("--predict", action="store_true",
                        help="the model's grid and causes only: build and run nothing")
    parser.add_argument("--work", type=Path, default=CACHE / "stacks",
                        help="where environments are built (kept: a second run reuses them)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where each arm's SessionResults go, beside every session's "
                        "(nox passes MATRIX_RESULTS)")
    parser.add_argument("--jobs", type=int, default=2, help="arms run at once")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        request = from_args(args.pins, args.requirement)
        if args.python and not re.fullmatch(r"\d+\.\d+", args.python):
            raise StackError(f"--python {args.python!r} is not a version X.Y; name one, e.g. "
                             "--python 3.8")
        if args.predict:
            # The markers are read for the Python asked for, else this one: --predict
            # chooses none (that needs the registry).
            if request.conditional:
                print(f"note: environment markers read for Python {args.python or this_python()}"
                      f"{'' if args.python else ' (this one; name another with --python)'}")
            request = request.for_python(args.python or this_python())
            check_names(request, Registry(), everything=False)
            for line in request.ignored:
                print(f"ignored: {line}")
            return run_predict(request)
        plan = make_plan(request, args.python)
        describe(plan)
        env = build(plan, args.work)
        print(f"  environment {env.path} ({'reused' if env.reused else 'built'} in "
              f"{time.monotonic() - started:.1f} s): "
              + " ".join(f"{k}=={v}" for k, v in sorted(env.versions.items())))
        for line in env.hash_lines():
            print(f"  {line}")
        if plan.python_version == "2.7":  # pip resolved in the environment: say what it chose
            for name in MATTERS:
                if not request.exact(name) and env.installed.get(name):
                    print(f"  chose {name}=={env.installed[name]}: pip's choice for Python 2.7 "
                          "under the era's caps")
        if not env.patched:
            print(f"  no patch series for gevent-websocket {plan.gws} (patches/{GWS}/ has "
                  f"{', '.join(sorted(p.name for p in PATCHES.iterdir()))}): vanilla only")
        env.smoke()
    except StackError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    results = args.results
    versions = {GWS: plan.gws, "newrelic": env.versions.get("newrelic") or "0"}
    rows = prediction_grid(request.name, versions)
    rows = {arm: cells for arm, cells in rows.items() if not arm[1] or env.patched}
    print_grid(f"model: {request.name} (gevent-websocket {plan.gws}, newrelic "
               f"{versions['newrelic']})", rows, versions)
    docs = run_cells(plan, env, results, args.jobs)
    print_grid(f"observed: {request.name} on Python {plan.python_version} (beside the model: "
               "! marks a disagreement)", rows, versions, observed=observed_grid(docs))
    failed = [session_name(request.name, *arm) for arm, doc in docs.items()
              if doc.get("pytest_exit") != 0]
    cells = sum(len(d.get("cells", [])) for d in docs.values())
    print(f"{cells} cells in {time.monotonic() - started:.1f} s; results in {results}"
          + (f"; failed: {', '.join(failed)} (see *.pytest.log there)" if failed else ""))
    return 1 if failed else 0
