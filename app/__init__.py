"""The system under test: the seed's Flask app, its gevent server and its clients.

Kept import-light on purpose: ``python -m app`` must be able to start the New
Relic agent before Flask is imported, so nothing here imports Flask or gevent.
Runs unchanged on CPython 2.7 (the 2016 stack) and 3.x (today's stack).
"""
