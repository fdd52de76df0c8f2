"""gunicorn settings, read from the project config (RISK_CONFIG, else config.json): make serve uses this file.

Bind address and port, workers (api.workers; 0 = one per CPU core, since predictions are CPU-bound) with
api.threads threads each (gthread: a client holding a keep-alive connection or sending slowly ties up a thread,
not a whole worker), timeout. The app is built once in the master and forked (preload_app), so workers share its
imported libraries' memory and start at once. Logs go to <log_folder_path>/access.log and gunicorn.log. Options
given on the gunicorn command line win.
"""
import multiprocessing
import os

from config import DEFAULT_CONFIG, load_config

_cfg = load_config(os.environ.get("RISK_CONFIG") or DEFAULT_CONFIG)
_api = _cfg["api"]
_cfg["log_folder_path"].mkdir(parents=True, exist_ok=True)

bind = f"{_api['host']}:{_api['port']}"
workers = _api["workers"] or multiprocessing.cpu_count()
worker_class = "gthread"
threads = _api["threads"]
preload_app = True
timeout = _api["timeout"]
graceful_timeout = 10
keepalive = 5
accesslog = str(_cfg["log_folder_path"] / "access.log")
errorlog = str(_cfg["log_folder_path"] / "gunicorn.log")
loglevel = "info"
limit_request_line = 8190
