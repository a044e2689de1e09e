"""A rig for load tests of live streams: a private PostgreSQL with few connections, the web
server on it, and many open event streams from one asyncio client.

The shared PostgreSQL of the machine is never the target: a test that could fill
`max_connections` runs against a database server of its own, started in a temporary directory
on a free port and removed afterwards. Used by tests/planning/test_stream_load.py and
`make bench streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


@contextlib.contextmanager
def private_postgres(max_connections: int = 20) -> Iterator[str]:
    """A PostgreSQL server of our own; yields its URL (database `postgres`, trust auth)."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL's server programs are not installed (/usr/lib/postgresql)")
    home = Path(tempfile.mkdtemp(prefix="outside-in-pg-"))
    data = home / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    try:
        subprocess.run(
            _as_postgres(
                [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        # The server started by pg_ctl must not inherit a pipe of ours: a read of the pipe
        # would wait for the server to end. Its output goes to its log file.
        subprocess.run(
            _as_postgres(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(home / "log"),
                    "-w",
                    "-o",
                    f"-p {port} -k {home} -c listen_addresses=127.0.0.1 "
                    f"-c max_connections={max_connections} -c superuser_reserved_connections=1 "
                    "-c fsync=off -c shared_buffers=16MB",
                    "start",
                ]
            ),
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        shutil.rmtree(home, ignore_errors=True)


SETUP = """
import sys
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from planning.models import Membership
from planning.services import create_plan
plan = create_plan("Load test plan", "load")
for number in range(int(sys.argv[1])):
    user = get_user_model().objects.create_user(f"member{number}", f"member{number}@example.com")
    Membership.objects.create(plan=plan, user=user, role="observer" if number else "cmo")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    print(session.session_key)
"""


@dataclass
class Web:
    """uvicorn serving the app on a database of the rig's, with signed-in members' sessions."""

    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    sessions: list[str] = field(default_factory=list)
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="outside-in-web-")))

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_URL"}
        }
        env.update(
            DATABASE_URL=self.database_url,
            OUTSIDE_IN_VAR_DIR=str(self.home),
            DEBUG="1",
            LOG_LEVEL="WARNING",
            **self.env,
        )
        return env

    def manage(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def prepare(self, members: int) -> None:
        self.manage("migrate", "-v", "0")
        self.sessions = self.manage(
            "shell", "-v", "0", "-c", f"import sys; sys.argv = ['x', '{members}']; " + SETUP
        ).split()

    def start(self) -> None:
        self.port = free_port()
        self.log = open(self.home / "uvicorn.log", "wb")
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=self.environment(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not start:\n" + self.log_text())

    def log_text(self) -> str:
        return (self.home / "uvicorn.log").read_text(errors="replace")[-4000:]

    def memory_mb(self) -> float:
        """The server's resident memory."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def connections_used(database_url: str) -> int:
    """Client connections to the rig's database server, this probe's own left out."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(row[0]) if row else 0


@dataclass
class Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    head: bytes


async def open_stream(port: int, session: str, path: str = "/plans/load/events/") -> Stream:
    """GET the events URL as a browser's EventSource does; returns once the answer's status
    line and headers are in (and, for a stream, its `hello` event)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Cookie: sessionid={session}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 200:
        buffered = b""
        while b"event: hello" not in buffered:
            chunk = await reader.read(4096)
            if not chunk:
                break
            buffered += chunk
    return Stream(reader, writer, status, head)


async def get(port: int, session: str, path: str) -> tuple[int, float]:
    """One plain GET: its status and how long it took, in seconds."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={session}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1]), time.perf_counter() - started


async def close_all(streams: list[Stream]) -> None:
    for stream in streams:
        stream.writer.close()
    await asyncio.gather(
        *(stream.writer.wait_closed() for stream in streams), return_exceptions=True
    )
