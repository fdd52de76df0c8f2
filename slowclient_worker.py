"""A gunicorn gthread worker that receives each request in its main loop, so slow or stalled clients hold no threads.

    worker_class = "slowclient_worker.RequestReceivingWorker"    # gunicorn.conf.py

Why not gunicorn's own gthread: it hands a connection to a thread as soon as its first byte arrives, and the thread
then blocks until the whole request is in, with no time limit (since 25.2.0 only a connection that sends nothing
is kept off the threads). Measured with gunicorn 27.0.1, 2 workers x 4 threads, api.timeout 8 s: 12 clients that
stopped in the head, in the body, behind a Content-Length larger than the body, or sent a byte now and then were
neither answered nor cut off in 90 s, and meanwhile about a third of ordinary requests got no answer within 5 s.

This worker receives a request's head and a body of up to BUFFERED_BODY bytes without blocking, as gthread already
waits on kept-alive connections, so a thread only gets a request that has arrived. A client that has not sent its
whole request within `timeout` seconds (api.timeout) is answered 408 and cut off, also when a thread was already
reading its large or chunked body (the app then answers 408 itself). Memory held for slow clients is bounded by
worker_connections times (largest head + BUFFERED_BODY bytes).

Checked against gunicorn 27.0.1: it relies on ThreadWorker internals (enqueue_req, handle, murder_pending, poller,
nr_conns, TConn.parser/init/data_ready, the unreader's take_buffered/unread), so tests/test_api_abuse.py must pass
again before gunicorn is upgraded.
"""
import json
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from config import DEFAULT_CONFIG, load_config

BUFFERED_BODY = 256 * 1024  # bodies up to this size arrive whole before a thread is used; larger ones stream in
HEAD_END = b"\r\n\r\n"


def request_head_limit(cfg: Any) -> int:
    """The most bytes a request head may take before gunicorn's parser refuses it anyway."""
    return cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 4


def ready_for_thread(data: bytes, head_limit: int, max_body: int) -> bool:
    """Whether what a client sent so far should go to a thread rather than wait in the main loop for more."""
    end = data.find(HEAD_END)
    if end < 0:
        return data.count(b"\n") != data.count(b"\r\n") or len(data) > head_limit  # the parser refuses both
    fields: dict[bytes, list[bytes]] = {}
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    lengths = fields.get(b"content-length", [b"0"])
    # a chunked body and one behind Expect: 100-continue (only the app's answer settles it) stream in a thread;
    # the parser or the app refuse odd lengths at once
    if b"transfer-encoding" in fields or b"expect" in fields or len(lengths) != 1 \
            or not lengths[0].isdigit() or len(lengths[0]) > 12:
        return True
    length = int(lengths[0])
    # a body over the limit is refused unread (413); else the whole body, or its first BUFFERED_BODY bytes
    return length > max_body or len(data) - end - len(HEAD_END) >= min(length, BUFFERED_BODY)


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
        # the same config the app and gunicorn.conf.py read, for the app's body limit
        project = load_config(os.environ.get("RISK_CONFIG") or DEFAULT_CONFIG)
        self.max_body = project["api"]["max_body_bytes"]
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
            return ready_for_thread(self.receiving[conn][1], self.head_limit, self.max_body)
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
