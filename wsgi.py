"""The WSGI entry gunicorn serves: the app built by the same factory the tests use.

    gunicorn -c gunicorn.conf.py wsgi:app            # config from $RISK_CONFIG, else config.json
"""
import os

from app import create_app

app = create_app(os.environ.get("RISK_CONFIG"))
