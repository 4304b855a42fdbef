"""sentry-sdk with its Flask integration, ``sentry_sdk.init(...)``, its transport a capture.

The docs' setup is ``sentry_sdk.init(dsn=..., integrations=[FlaskIntegration()],
traces_sample_rate=1.0)``.  The only change is ``transport=`` (a sentry-sdk
option): envelopes go to CapturingTransport.  The DSN names a host under
.invalid (RFC 2606): the SDK needs one to be enabled, and any attempt to reach
it would be an ``outbound`` DNS lookup that the no-network checks catch.
The integration (SentryWsgiMiddleware) ends the transaction when the
application returns, before the server touches the iterable.
"""
from __future__ import absolute_import

import sentry_sdk
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.transport import Transport

from . import finished
from ._tag import tag_requests

NAME = "sentry"
TAG = "app_rid"
DSN = "https://public@layer-capture.invalid/1"


class CapturingTransport(Transport):
    def capture_envelope(self, envelope):
        for item in envelope.items:
            if item.type == "transaction":
                self._transaction(item.payload.json)

    def capture_event(self, event):  # sentry-sdk 1.x sends some events without an envelope
        if event.get("type") == "transaction":
            self._transaction(event)

    def _transaction(self, event):
        rid = (event.get("tags") or {}).get(TAG)
        finished(NAME, int(rid) if rid is not None else None, "transaction sent",
                 name=event.get("transaction"))

    def flush(self, timeout, callback=None):
        pass

    def kill(self):
        pass


def start():
    sentry_sdk.init(dsn=DSN, integrations=[FlaskIntegration()], traces_sample_rate=1.0,
                    transport=CapturingTransport)


def instrument(flask_app):
    tag_requests(flask_app, lambda rid: sentry_sdk.set_tag(TAG, str(rid)))
    return flask_app


def evidence(flask_app, application):
    from flask import Flask

    client = sentry_sdk.Hub.current.client if hasattr(sentry_sdk, "Hub") else None
    if client is None and hasattr(sentry_sdk, "get_client"):
        client = sentry_sdk.get_client()
    call = getattr(Flask.__call__, "__func__", Flask.__call__)
    return {"version": sentry_sdk.VERSION,
            "transport": type(getattr(client, "transport", None)).__name__,
            "hook": "Flask.__call__ patched by FlaskIntegration",
            "hook_installed": "sentry" in (getattr(call, "__module__", "") or "")}
