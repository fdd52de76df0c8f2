"""Call every API endpoint at the configured URL and save the answers to apireturns.txt.

    python apicalls.py                 # needs the API running (make serve)
    python apicalls.py --json

Writes <output_model_path>/apireturns.txt: one readable JSON document with each endpoint's status and answer.
If the API is down it says so in one line and exits 1. Sends the bearer token when the api.token_env variable
is set, and waits at most api.request_timeout seconds for each answer.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import requests

import artifacts
import cli
import history
from atomicio import atomic_write_json
from config import display_path

log = logging.getLogger("apicalls")



def calls(cfg: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, requests keyword arguments) for every endpoint."""
    test_file = next(iter(sorted(cfg["test_data_path"].glob(f"*.{cfg['input_file_extension']}"))), None)
    named = test_file.relative_to(cfg["root"]).as_posix() if test_file else "testdata/testdata.csv"
    return [
        ("GET", "health", {}),
        ("POST", "prediction", {"json": {"filepath": named}}),
        ("GET", "scoring", {}),
        ("GET", "summarystats", {}),
        ("GET", "diagnostics", {}),
    ]


def call_all(cfg: dict[str, Any]) -> dict[str, Any]:
    """Call each endpoint and write apireturns.txt; StepError in one line if the API cannot be reached."""
    base = cfg["url"].rstrip("/") + "/"
    token = os.environ.get(cfg["api"]["token_env"])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = {}
    with requests.Session() as s:
        for method, path, kw in calls(cfg):
            try:
                r = s.request(method, base + path, headers=headers, timeout=cfg["api"]["request_timeout"], **kw)
            except requests.RequestException as e:
                raise cli.StepError(f"the API at {base} is not reachable ({type(e).__name__}); start it with "
                                    f"`make serve`") from None
            try:
                body = r.json()
            except ValueError:
                body = r.text[:2000]
            answers[path] = {"method": method, "status": r.status_code, "answer": body}
            log.info("%s /%s -> %d", method, path, r.status_code)
    out = artifacts.path(cfg, "api_returns")
    atomic_write_json(out, {"url": base, "called_at": history.now_iso(),
                            "endpoints": answers})
    failed = [p for p, a in answers.items() if a["status"] >= 400]
    return {"url": base, "endpoints": len(answers), "failed": failed, "file": display_path(cfg, out)}


def refresh(cfg: dict[str, Any]) -> dict[str, Any]:
    """What fullprocess calls: the API being down is normal there, so it is reported, not raised."""
    try:
        return call_all(cfg)
    except cli.StepError as e:
        log.info("%s", e)
        return {"skipped": str(e)}


def summary(r: dict[str, Any]) -> str:
    """One line for people."""
    bad = f", {len(r['failed'])} answered with an error ({', '.join(r['failed'])})" if r["failed"] else ""
    return f"called {r['endpoints']} endpoints at {r['url']}{bad} -> {r['file']}"


if __name__ == "__main__":
    cli.run("apicalls", cli.parser(__doc__).parse_args(), call_all, summary)
