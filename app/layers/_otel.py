"""OpenTelemetry's SDK as its docs set it up, with the exporter an in-process capture.

The docs pair a TracerProvider with a span processor and an exporter (OTLP in
production).  The exporter is replaced; the processor is SimpleSpanProcessor,
which exports as each span ends: the event then marks the moment span.end()
ran, which is the layer's end-of-request work (the batch processor would only
delay the same export by up to its schedule).
"""
from __future__ import absolute_import

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from . import finished
from ._tag import RID_KEY

ATTRIBUTE = "app.rid"


class CapturingExporter(SpanExporter):
    def __init__(self, layer):
        self.layer = layer

    def export(self, spans):
        for span in spans:
            if span.kind == trace.SpanKind.SERVER:
                finished(self.layer, span.attributes.get(ATTRIBUTE), "span exported",
                         name=span.name)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def provide(layer):
    """The global tracer provider, exporting to the capture."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(CapturingExporter(layer)))
    trace.set_tracer_provider(provider)
    return provider


def request_hook(span, environ):
    """Both instrumentations' documented request_hook(span, environ): the request id."""
    rid = environ.get(RID_KEY)
    if span is not None and span.is_recording() and rid is not None:
        span.set_attribute(ATTRIBUTE, rid)


def version(distribution):
    from importlib.metadata import version as installed

    return installed(distribution)
