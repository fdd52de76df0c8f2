"""gunicorn settings, read from the project config (RISK_CONFIG, else config.json): make serve uses this file.

Bind address and port, workers (api.workers; 0 = one per CPU core, since predictions are CPU-bound) with
api.threads threads each, timeout. The app is built once in the master and forked (preload_app), so workers share
its imported libraries' memory and start at once. Logs go to <log_folder_path>/access.log and gunicorn.log. Options
given on the gunicorn command line win.

The worker is gthread's with requests received in its main loop (slowclient_worker.py), so slow or stalled clients
cannot hold the threads: a request not fully arrived within `timeout` seconds (api.timeout) is answered 408.
"""
import multiprocessing
import os

from config import DEFAULT_CONFIG, load_config

_cfg = load_config(os.environ.get("RISK_CONFIG") or DEFAULT_CONFIG)
_api = _cfg["api"]
_cfg["log_folder_path"].mkdir(parents=True, exist_ok=True)

bind = f"{_api['host']}:{_api['port']}"
workers = _api["workers"] or multiprocessing.cpu_count()
worker_class = "slowclient_worker.RequestReceivingWorker"
threads = _api["threads"]
worker_connections = 500
preload_app = True
timeout = _api["timeout"]
graceful_timeout = 10
keepalive = 5
accesslog = str(_cfg["log_folder_path"] / "access.log")
errorlog = str(_cfg["log_folder_path"] / "gunicorn.log")
loglevel = "info"
control_socket = str(_cfg["log_folder_path"] / "gunicorn.ctl")  # not ~/.gunicorn/, which every server would share
limit_request_line = 8190
limit_request_fields = 50
