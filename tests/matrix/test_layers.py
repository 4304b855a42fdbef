"""A request layer's cells: hello_goodbyer x streaming with the layer on, and
the same four with it off (the control), on one stack and build.

`nox -s "layer(<stack>, <layer>, fixed=...)"` runs them with --layer; `nox -s
"handler(name=<handler>, agent=False)"` runs them once per layer on that handler (--handler,
no layer-off control: its own cells are those).  Each cell is
run as the matrix runs its own (tests/harness/cellrun.py run_cell): its server, both
clients, the positive controls (plus the layer's: set up, pinned, and finishing a
plain request), and the observation against the expectation model, which now also
predicts ``layer_finished`` and whether the server closes TCP first.
"""

from __future__ import annotations

import pytest

from tests.harness.cellrun import run_cell
from tests.harness.cells import LAYER_COLUMN_AXES, layer_cells


def pytest_generate_tests(metafunc):
    if "layer_cell" not in metafunc.fixturenames:
        return
    opt = metafunc.config.getoption
    layer, stack, fixed = opt("layer"), opt("stack"), opt("fixed")
    if layer is None or fixed is None:
        metafunc.parametrize(
            "layer_cell",
            [
                pytest.param(
                    None,
                    marks=pytest.mark.skip(
                        reason="layer cells need --layer NAME and --fixed/--no-fixed "
                        '(run through nox: nox -s "layer(today, sentry, fixed=True)")'
                    ),
                )
            ],
            ids=["no-layer"],
        )
        return
    found = layer_cells(stack, fixed, layer, opt("handler"))
    metafunc.parametrize("layer_cell", found, ids=[c.slug(LAYER_COLUMN_AXES) for c in found])


@pytest.mark.cell
def test_layer_cell(session, results, layer_cell):
    expected = run_cell(session, results, layer_cell)  # the observation agrees with the model
    # The target: every layer finishes.  Where the model names the handler's
    # defect as the reason it does not, the cell is that defect's expected failure; it is
    # strict, since a vanilla build that starts finishing disagrees with the model above.
    if expected.layer_defect:
        pytest.xfail(f"{layer_cell.build}: {expected.layer_defect}")
