"""Alerts: someone is told when a fullprocess tick finds something that matters, through Apprise.

    alerts.send_for_tick(cfg, result)    # fullprocess.py, once the tick is recorded

Kinds of event: model-drift, data-drift (verdict DRIFT), deploy (bootstrap included), challenger-refused, failed
(with the run's one line) and recovered (the first successful run after failed ones). One message per tick and
URL of alerts.urls names the kinds due; each kind goes to each URL at most once per alerts.cooldown_minutes (a
"recovered" sent since ends the cooldown of "failed", and the reverse: a new failure is never held back). The
history store's alerts table records what was sent, to which URL (a hash of it) and when.
No URL configured: nothing is read, imported or sent. A receiver that cannot be reached, a bad URL or a failing
store is a warning in the log, never a failed run.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import logging.handlers
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import history

log = logging.getLogger("fullprocess.alerts")  # into fullprocess's log file, warnings on stderr

TIMEOUT_SECONDS = 5.0  # per connection and per read: a dead receiver never holds a cron tick for long
# In the order a message lists them; the first one's severity is the message's.
KINDS = ("failed", "recovered", "model-drift", "estimated-drop", "data-drift", "challenger-refused", "deploy")
SEVERITY = {"failed": "failure", "model-drift": "warning", "data-drift": "warning", "challenger-refused": "warning",
            "recovered": "success", "deploy": "success"}
PAIRED = {"failed": "recovered", "recovered": "failed"}
SUCCESSFUL = ("ok", "no-new-data")


def send_for_tick(cfg: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Send the alerts a tick's result calls for; returns the kinds delivered to at least one URL. Never raises."""
    try:
        urls = cfg["alerts"]["urls"]
        if not urls or result.get("outcome") in ("busy", "dry-run"):
            return []
        events = tick_events(result)
        if result.get("outcome") in SUCCESSFUL:
            events.update(recovery(cfg))
        return send(cfg, events, result) if events else []
    except Exception as e:  # an alert is never worth a failed run
        log.warning("alerts not sent: %s: %s", type(e).__name__, e, exc_info=True)
        return []


def tick_events(result: dict[str, Any]) -> dict[str, str]:
    """The kinds of event a tick's result shows, each with one line saying what happened."""
    events: dict[str, str] = {}
    check = result.get("check") or {}
    if check.get("verdict") == "drift":
        events["model-drift"] = f"release {check.get('release')}: {check.get('reason')}"
    # Rows too few for a model check are checked again with the next ones (fullprocess does not act on them
    # either): three odd rows can put PSI past its noise floor.
    if check.get("data_verdict") == "DRIFT" and check.get("verdict") != "insufficient-data":
        bad = [f for f in check.get("features") or [] if f.get("verdict") != "OK"]
        named = ", ".join(f"{f['feature']} {f['verdict']} (PSI {f['psi']:.2f}, KS {f['ks']:.2f})" for f in bad)
        events["data-drift"] = f"release {check.get('release')}: {named or 'see the drift check'}"
    estimated = check.get("estimated") or {}
    if estimated.get("verdict") == "drop":
        events["estimated-drop"] = f"release {check.get('release')}: {estimated.get('reason')}"
    # Decisions are present only when the pipeline ran to its end: a deploy decided is a deploy done.
    for d in result.get("decisions") or []:
        if d.get("decision") == "deploy":
            events["deploy"] = d["reason"]
        elif d.get("decision") == "bootstrap":
            events["deploy"] = f"bootstrap: deployed release {check.get('release')} ({d['reason']})"
        elif d.get("decision") == "reject-challenger":
            events["challenger-refused"] = d["reason"]
    if result.get("outcome") == "failed":
        events["failed"] = result.get("line", "")
    return events


def recovery(cfg: dict[str, Any]) -> dict[str, str]:
    """{"recovered": why} when the runs just before this successful one failed, else {}."""
    failed, since = history.safely(cfg, "cannot be read for alerts", history.failures_before_latest) or (0, None)
    if not failed:
        return {}
    return {"recovered": f"this run succeeded after {failed} failed run{'s' if failed != 1 else ''} "
                         f"(the first started at {since})"}


def send(cfg: dict[str, Any], events: dict[str, str], result: dict[str, Any]) -> list[str]:
    """Send each URL the events not in its cooldown, as one message, and record what went where."""
    import apprise  # here, not at the top: a tick with nothing to say never loads it

    urls: list[str] = cfg["alerts"]["urls"]
    targets = [target_id(u) for u in urls]
    # A store that cannot be read means no cooldown known: better a second message than a failure unsaid.
    sent = history.safely(cfg, "cannot be read for the alert cooldown", history.alerts_sent, targets) or {}
    now = datetime.now(timezone.utc)
    at = history.now_iso()
    cooldown = timedelta(minutes=cfg["alerts"]["cooldown_minutes"])
    rows: list[tuple[str, str, str, bool, str]] = []
    delivered: set[str] = set()
    for i, (url, target) in enumerate(zip(urls, targets, strict=True)):
        due = [k for k in KINDS if k in events and not cooling(sent, target, k, now, cooldown)]
        if not due:
            log.info("alerts.urls[%d]: %s held back by the cooldown", i, ", ".join(events))
            continue
        title, body = message(cfg, {k: events[k] for k in due}, result, at)
        ok, shown, why = notify(apprise, url, title, body, SEVERITY[due[0]])
        if ok:
            log.info("alert sent to %s: %s", shown, ", ".join(due))
            delivered.update(due)
        else:
            log.warning("alert to %s not sent (%s): %s; the run goes on", shown or f"alerts.urls[{i}]",
                        ", ".join(due), why)
        rows += [(at, k, target, ok, title) for k in due]
    if rows:
        history.safely(cfg, "could not record the alerts sent", history.record_alerts, rows)
    return [k for k in KINDS if k in delivered]


def cooling(sent: dict[tuple[str, str], str], target: str, kind: str, now: datetime, cooldown: timedelta) -> bool:
    """Whether a kind was delivered to a target within the cooldown (and not since undone by its pair)."""
    last = sent.get((target, kind))
    if last is None or now - datetime.fromisoformat(last) >= cooldown:
        return False
    pair = sent.get((target, PAIRED.get(kind, "")))
    return not (pair is not None and datetime.fromisoformat(pair) > datetime.fromisoformat(last))


def target_id(url: str) -> str:
    """A URL's name in the history: a hash, so its password or token is never stored."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def message(cfg: dict[str, Any], due: dict[str, str], result: dict[str, Any], at: str) -> tuple[str, str]:
    """Title and plain-text body: one line per kind, then the run's line, when and which config."""
    title = f"Risk assessment {socket.gethostname()}:{cfg['root'].name}: {', '.join(due)}"
    lines = [f"{kind}: {what}" for kind, what in due.items()]
    if result.get("outcome") != "failed":  # a failed run's line is already the "failed" line
        lines.append(f"run: {result.get('line', '')}")
    lines.append(f"at: {at} (config {cfg['config_path']})")
    return title, "\n".join(lines)


def notify(apprise: Any, url: str, title: str, body: str, severity: str) -> tuple[bool, str, str]:
    """Send one message to one URL: (delivered, the URL with secrets masked, why not)."""
    sender = apprise.Apprise()
    with apprise_warnings() as said:
        if not sender.add(url):
            return False, "", f"not a URL Apprise can use ({urlsplit(url).scheme or 'no scheme'}://...)"
        query = parse_qs(urlsplit(url).query)
        shown = ""
        for service in sender:
            shown = service.url(privacy=True).split("?", 1)[0]  # secrets masked; Apprise's default options left out
            # short timeouts unless the URL sets its own (cto=, rto=)
            if "cto" not in query:
                service.socket_connect_timeout = TIMEOUT_SECONDS
            if "rto" not in query:
                service.socket_read_timeout = TIMEOUT_SECONDS
        ok = sender.notify(body=body, title=title, notify_type=apprise.NotifyType(severity),
                           body_format=apprise.NotifyFormat.TEXT)
    why = "; ".join(dict.fromkeys(" ".join(r.getMessage().split()).rstrip(".") for r in said))
    return bool(ok), shown, why or "the receiver refused it"


@contextlib.contextmanager
def apprise_warnings() -> Iterator[list[logging.LogRecord]]:
    """Apprise's own warnings, kept for our one warning line rather than printed on stderr beside it."""
    logger = logging.getLogger("apprise")
    keep = logging.handlers.BufferingHandler(capacity=10_000)
    keep.setLevel(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(keep)
    logger.propagate = False
    try:
        yield keep.buffer
    finally:
        logger.removeHandler(keep)
        logger.propagate = propagate
