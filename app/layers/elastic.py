"""elastic-apm's Flask integration, ``ElasticAPM(app)``, its transport an in-process capture.

The docs' setup is ``app.config["ELASTIC_APM"] = {...}`` then ``ElasticAPM(app)``.
The only change is TRANSPORT_CLASS (an elastic-apm setting): events go to
CapturingTransport instead of an APM server.  The integration ends the
request's transaction in ``response.call_on_close(client.end_transaction)``,
so the transaction reaches the transport only if the server calls close().
"""
from __future__ import absolute_import

import elasticapm
from elasticapm.contrib.flask import ElasticAPM
from elasticapm.transport.base import Transport

from . import finished
from ._tag import tag_requests

NAME = "elastic-apm"
LABEL = "app_rid"  # elastic-apm labels: [a-z0-9_] keys
CONFIG = {
    "SERVICE_NAME": "streaming-contents",
    "TRANSPORT_CLASS": __name__ + ".CapturingTransport",
    # Both would reach out besides the transport: remote config polls the APM
    # server, and the cloud metadata probe asks 169.254.169.254 (AWS/GCP/Azure).
    "CENTRAL_CONFIG": False,
    "CLOUD_PROVIDER": "none",
}


class CapturingTransport(Transport):
    """Receives what the client would send; records each transaction as it arrives.

    The base class batches events on a thread and gzips them for the server;
    ``queue`` is where the client hands an event over, so the capture is there
    and no thread is started.
    """

    def queue(self, event_type, data, flush=False):
        if event_type == "transaction":
            labels = (data.get("context") or {}).get("tags") or {}
            rid = labels.get(LABEL)
            finished(NAME, int(rid) if rid is not None else None, "transaction sent",
                     name=data.get("name"), result=data.get("result"))

    def start_thread(self, pid=None):
        pass

    def send(self, data, forced_flush=False):
        raise AssertionError("CapturingTransport sends nothing: queue() captures")


def instrument(flask_app):
    flask_app.config["ELASTIC_APM"] = dict(CONFIG)
    apm = ElasticAPM(flask_app)
    flask_app.extensions["app.layers.elastic"] = apm
    tag_requests(flask_app, lambda rid: elasticapm.label(**{LABEL: str(rid)}))
    return flask_app


def evidence(flask_app, application):
    from flask import signals

    apm = flask_app.extensions["app.layers.elastic"]
    receivers = [getattr(r, "__func__", r) for r in
                 signals.request_finished.receivers_for(flask_app)]
    hook = getattr(ElasticAPM.request_finished, "__func__", ElasticAPM.request_finished)
    return {"version": elasticapm.VERSION,
            "transport": type(apm.client._transport).__name__,
            "hook": "flask.signals.request_finished -> ElasticAPM.request_finished",
            "hook_installed": hook in receivers}
