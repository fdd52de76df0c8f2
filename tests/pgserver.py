"""A throwaway PostgreSQL server on this machine, for the tests (conftest.pg_server) and the bench
(bench/history_backends.py): Debian's postgresql package, initdb in a temporary folder, trust auth, a free loopback
port and its socket in that folder; removed on exit.

    with throwaway_server() as url:              # postgresql://postgres@127.0.0.1:<port>/postgres
        db_url = fresh_database(url, "t_1")      # an empty database of that name (dropped first if there)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator


class ServerError(Exception):
    """The server cannot be had here; the message says what to install or what failed."""


def pg_bin(name: str) -> Path:
    """A PostgreSQL server command: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (never on PATH)."""
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise ServerError(f"PostgreSQL's {name} not found (Debian package postgresql); run: make system-packages")
    return Path(found)


def as_server_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as the postgres system user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> None:
    """Run a server command as the server user; ServerError with its output when it fails."""
    p = subprocess.run(as_server_user(cmd), capture_output=True, text=True)
    if p.returncode:
        raise ServerError(f"{Path(cmd[0]).name} failed: {' '.join((p.stderr or p.stdout).split())[-500:]}")


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server in a temporary folder, yield its maintenance database's URL, stop it and remove the folder."""
    folder = Path(tempfile.mkdtemp(prefix="risk-pg-"))  # not under pytest's tmp (mode 700): the server user reaches it
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    try:
        _run([str(pg_bin("initdb")), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
              "--locale=C"])
        # fsync off: the tests kill clients, never this server, and it saves seconds per test on a shared machine
        opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        _run([str(pg_bin("pg_ctl")), "-D", str(data), "-l", str(folder / "server.log"), "-o", opts, "-w", "start"])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(as_server_user([str(pg_bin("pg_ctl")), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """An empty database of that name on the server (an older one of that name is dropped); its URL."""
    import psycopg
    with psycopg.connect(server_url, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"
