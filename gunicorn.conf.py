"""gunicorn settings, read from the project config (RISK_CONFIG, else config.json): make serve uses this file.

Bind address and port, workers (api.workers; 0 = one per CPU core, since predictions are CPU-bound) with
api.threads threads each, timeout. The app is built once in the master and forked (preload_app), so workers share
its imported libraries' memory and start at once. Logs go to <log_folder_path>/access.log and gunicorn.log. Options
given on the gunicorn command line win.

Slow clients: gunicorn's gthread worker hands a connection to a thread as soon as its first bytes arrive, and the
thread then blocks until the whole request is in, with no time limit: eight clients sending a byte now and then (or
stopping halfway) held all eight threads of two workers, and nobody else was served. The worker below receives each
request's head and small body in its main loop instead (non-blocking, as gthread already waits on kept-alive
connections), so a thread only gets a request that has arrived. A client that has not sent its whole request within
`timeout` seconds (api.timeout) is answered 408 and cut off, also when a thread was already reading its large or
chunked body (the app then answers 408 itself). Memory held for slow clients is bounded by worker_connections times
(largest head + BUFFERED_BODY bytes).
"""
import json
import multiprocessing
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from config import DEFAULT_CONFIG, load_config

_cfg = load_config(os.environ.get("RISK_CONFIG") or DEFAULT_CONFIG)
_api = _cfg["api"]
_cfg["log_folder_path"].mkdir(parents=True, exist_ok=True)

BUFFERED_BODY = 256 * 1024  # bodies up to this size arrive whole before a thread is used; larger ones stream in
HEAD_END = b"\r\n\r\n"


def request_head_limit(cfg: Any) -> int:
    """The most bytes a request head may take before gunicorn's parser refuses it anyway."""
    return cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 4


def ready_for_thread(data: bytes, head_limit: int) -> bool:
    """Whether what a client sent so far should go to a thread: its whole request (head and a body of at most
    BUFFERED_BODY bytes), a head the parser will refuse, a body the app refuses unread (over api.max_body_bytes),
    or the first BUFFERED_BODY bytes of a body a thread must stream (chunked, larger, or behind an
    Expect: 100-continue that only the app's answer settles)."""
    end = data.find(HEAD_END)
    if end < 0:
        return data.count(b"\n") != data.count(b"\r\n") or len(data) > head_limit  # the parser refuses both
    fields: dict[bytes, list[bytes]] = {}
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    lengths = fields.get(b"content-length", [b"0"])
    if b"transfer-encoding" in fields or b"expect" in fields or len(lengths) != 1 \
            or not lengths[0].isdigit() or len(lengths[0]) > 12:  # the parser or the app refuse odd lengths
        return True
    length = int(lengths[0])
    return length > _api["max_body_bytes"] or len(data) - end - len(HEAD_END) >= min(length, BUFFERED_BODY)


def timeout_answer(seconds: int) -> bytes:
    """The raw 408 answer to a client that did not send its request in time, JSON like every API error."""
    body = json.dumps({"error": f"request not received within {seconds} s; send the whole request at once"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class RequestReceivingWorker(ThreadWorker):
    """gthread worker whose main loop receives requests before threads serve them, with a deadline per request."""

    def init_process(self) -> None:
        """Per-worker state, made after the fork."""
        self.receiving: dict[Any, list] = {}  # connection -> [deadline, bytes so far], waited on by the poller
        self.received: dict[Any, bytes] = {}  # connection -> its whole request, queued for a thread
        self.serving: dict[Any, float] = {}   # connection -> deadline, while a thread serves it
        self.head_limit = request_head_limit(self.cfg)
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        """Wait in the main loop for the connection's request (new, kept-alive, or pipelined bytes already read)."""
        # TLS and HTTP/2 read their own handshakes from the socket: those connections are served as gthread does
        if self.cfg.is_ssl or self.cfg.http2_cleartext != "off" or conn in self.received:
            super().enqueue_req(conn)
            return
        data = conn.parser.unreader.take_buffered() if conn.parser else b""
        # nothing sent yet: the keep-alive wait gunicorn gives an idle connection; then the request's deadline
        deadline = time.monotonic() + (self.cfg.timeout if data else self.cfg.keepalive)
        self.receiving[conn] = [deadline, bytearray(data)]
        if data and self._ready(conn):
            self._hand_over(conn)
            return
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn: Any, _sock: Any) -> None:
        """Take what the client sent; a thread gets the connection once its request is in."""
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        entry = self.receiving[conn]
        if not chunk:  # the client went away
            self._drop(conn)
            return
        if not entry[1]:
            entry[0] = time.monotonic() + self.cfg.timeout
        entry[1] += chunk
        if self._ready(conn):
            self.poller.unregister(conn.sock)
            self._hand_over(conn)

    def _ready(self, conn: Any) -> bool:
        """ready_for_thread for a connection's bytes so far; when in doubt, a thread and gunicorn's parser judge."""
        try:
            return ready_for_thread(self.receiving[conn][1], self.head_limit)
        except Exception:  # raised in the main loop, it would end the worker
            self.log.exception("cannot tell whether the request from %s is complete", conn.client[0])
            return True

    def _hand_over(self, conn: Any) -> None:
        """Queue a connection whose request has arrived for a thread."""
        deadline, data = self.receiving.pop(conn)
        self.received[conn] = bytes(data)
        self.serving[conn] = deadline
        super().enqueue_req(conn)

    def _drop(self, conn: Any, answer: bytes = b"") -> None:
        """Close a connection still sending its request, with a last answer when there is one."""
        self.receiving.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if answer:
            try:
                conn.sock.send(answer)
                conn.sock.shutdown(socket.SHUT_WR)
                for _ in range(16):  # take what the client already sent, or closing would reset the connection
                    if not conn.sock.recv(65536):  # and could drop the answer before the client reads it
                        break
            except OSError:
                pass  # nothing more to read (the socket does not block here), or a client that is gone
        self.nr_conns -= 1
        conn.close()

    def handle(self, conn: Any) -> Any:
        """Serve a connection in a thread, its request's bytes put in front of its parser."""
        data = self.received.pop(conn, None)
        if data is not None:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(data)
            conn.data_ready = True
        try:
            return super().handle(conn)
        finally:
            self.serving.pop(conn, None)

    def murder_pending(self) -> None:
        """Also cut off, once a second from the main loop, every client whose request is overdue."""
        super().murder_pending()
        now = time.monotonic()
        for conn, (deadline, data) in list(self.receiving.items()):
            if deadline < now:
                if data:
                    self.log.warning("cut off %s: request not received within %d s", conn.client[0],
                                     self.cfg.timeout)
                self._drop(conn, timeout_answer(self.cfg.timeout) if data else b"")
        for conn, deadline in list(self.serving.items()):
            if deadline < now:
                # Only reading ends: a body still arriving ends short (the app answers 408), an answer being
                # computed or written is unaffected.
                self.serving.pop(conn, None)
                try:
                    conn.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


bind = f"{_api['host']}:{_api['port']}"
workers = _api["workers"] or multiprocessing.cpu_count()
worker_class = RequestReceivingWorker
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
