"""One JSON object per line on stdout: the server's observable record.

The harness reads these lines as evidence, so every observation the seed made
by reading the terminal (``print`` in the views, the middleware's message) is
an event here instead.
"""
from __future__ import absolute_import

import json
import os
import sys
import time


def emit(event, **fields):
    fields["event"] = event
    fields["t"] = round(time.time(), 6)
    fields["pid"] = os.getpid()
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()
