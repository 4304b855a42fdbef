"""The request id, read where a layer's own data can carry it."""
from __future__ import absolute_import

RID_KEY = "app.rid"


def tag_requests(flask_app, tag):
    """Call ``tag(rid)`` in every request before its view: the layer records the id."""

    @flask_app.before_request
    def tag_with_request_id():
        from flask import request

        rid = request.environ.get(RID_KEY)
        if rid is not None:
            tag(rid)
