"""The experiment's WSGI applications, for a WSGI server of the user's choice.

    gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker app.wsgi:application
    gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker app.wsgi:hello_goodbyer

``hello_goodbyer`` is the same application wrapped in the seed's HelloGoodbyer.
With the agent, start the server through ``newrelic-admin run-program`` with
NEW_RELIC_CONFIG_FILE=app/newrelic.ini (NEW_RELIC_ENVIRONMENT=rum_on or
rum_off): the agent is then imported before this module imports Flask, as
app.agent requires.  app/gunicorn_conf.py adds what the harness observes.
"""
from __future__ import absolute_import

from .__main__ import build_application

application = build_application(hello_goodbyer=False)
hello_goodbyer = build_application(hello_goodbyer=True)
