"""Browser tests: Playwright drives Debian's Chromium against the app as it runs in production,
uvicorn (ASGI, for the event streams) and, for background jobs, a Celery worker, both started
here as subprocesses that share the test's database, media and cache.

The database is shared, so these tests are `django_db(transaction=True)`: the rows a test writes
are committed, and the server sees them. On PostgreSQL the server uses pytest's test database. On
SQLite the test database must be a file: it is one when the run holds only browser tests
(`pytest -m browser`); a mixed run keeps SQLite in memory for speed, and these tests skip there
(fail with REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings

from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import REQUIRE_SERVICES, Persona, free_port, need_service

BASE_DIR = Path(settings.BASE_DIR)
# The environment the test process has and the servers must not inherit.
PRIVATE_ENV = {"DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL", "REDIS_URL", "PYTEST_CURRENT_TEST"}

# Records every Content-Security-Policy violation of a page, before any of its scripts run.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def _skip_or_fail(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(message + " and REQUIRE_SERVICES=1")
    pytest.skip(message)


# --- the shared directory and database ------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_var_dir(tmp_path_factory) -> Path:
    """OUTSIDE_IN_VAR_DIR of the servers: media, the file cache, the filesystem broker, and on
    SQLite the test database (the servers' settings look for it there)."""
    return tmp_path_factory.mktemp("browser-var")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings, browser_var_dir) -> None:
    """On SQLite, a run of browser tests alone keeps its test database in a file the servers
    open too. pytest-django sets the database up once per run, for its first test: a mixed run
    starts with other tests and keeps the faster in-memory database (the browser tests skip)."""
    db = settings.DATABASES["default"]
    only_browser = all(item.get_closest_marker("browser") for item in request.session.items)
    if db["ENGINE"] == "django.db.backends.sqlite3" and only_browser:
        db.setdefault("TEST", {})["NAME"] = str(browser_var_dir / "outside-in.sqlite3")


def _database_env(var_dir: Path) -> dict[str, str]:
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = quote(db.get("USER") or "", safe="")
        password = quote(db.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = db.get("HOST") or "127.0.0.1"
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return {"DATABASE_URL": f"postgres://{auth}{host}{port}/{quote(db['NAME'], safe='')}"}
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            _skip_or_fail(
                "the SQLite test database of this run is in memory, where the browser's server "
                "cannot see it; run the browser tests alone: pytest -m browser"
            )
        # No DATABASE_URL: the servers open VAR_DIR/outside-in.sqlite3 with the embedded
        # settings (WAL, busy timeout), the file pytest-django created.
        assert Path(db["NAME"]) == var_dir / "outside-in.sqlite3", db["NAME"]
        return {}
    _skip_or_fail(f"browser tests do not know how to share a {connection.vendor} database")
    return {}


# --- the servers ----------------------------------------------------------------------------------


def _wait_until_answers(
    url: str, process: subprocess.Popen, log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own URL)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer {url} in {timeout} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen | None, grace: float = 10) -> None:
    """Stop a process this fixture started: politely, then for good."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class App:
    """uvicorn serving the app on one port (restartable), and a Celery worker when asked for."""

    env: dict[str, str]
    var_dir: Path
    port: int = field(default_factory=free_port)
    web: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.var_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=BASE_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return process, log

    def start_web(self) -> None:
        self.web, log = self._spawn(
            "uvicorn",
            [
                "uvicorn",
                "config.asgi:application",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--lifespan=off",
                "--no-access-log",
                "--log-level=warning",
                "--timeout-graceful-shutdown=1",  # open event streams never end by themselves
            ],
        )
        _wait_until_answers(f"{self.url}/accounts/login/", self.web, log)

    def kill_web(self) -> None:
        """The server dies: no goodbye to the open streams."""
        assert self.web is not None
        self.web.kill()
        self.web.wait(10)

    def start_worker(self) -> None:
        """Start the worker; what is queued waits for it in the broker meanwhile."""
        if self.worker is None or self.worker.poll() is not None:
            self.worker, _ = self._spawn(
                "celery",
                [
                    "celery",
                    "--app=config",
                    "worker",
                    "--pool=solo",
                    "--loglevel=warning",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
            )

    def log(self, name: str = "uvicorn") -> str:
        return _tail(self.var_dir / f"{name}.log")

    def stop_worker(self) -> None:
        _stop(self.worker)
        self.worker = None

    def stop(self) -> None:
        _stop(self.web, grace=5)
        self.stop_worker()


@pytest.fixture(scope="package")
def app_server(django_db_setup, browser_var_dir) -> Iterator[App]:
    """One uvicorn for all browser tests (a test may kill and restart it); stopped, always,
    before pytest-django drops the test database."""
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    env.update(_database_env(browser_var_dir))
    if settings.REDIS_URL:
        parts = urlsplit(settings.REDIS_URL)
        need_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="1",
        SECRET_KEY=settings.SECRET_KEY,  # the test's sessions must be the server's
        ALLOWED_HOSTS="127.0.0.1,localhost",
        OUTSIDE_IN_VAR_DIR=str(browser_var_dir),
        MEDIA_ROOT=str(browser_var_dir / "media"),
        EMAIL_URL="locmem://",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    app = App(env=env, var_dir=browser_var_dir)
    try:
        app.start_web()
        yield app
    finally:
        app.stop()


@pytest.fixture
def worker(app_server: App) -> Iterator[App]:
    """A real Celery worker on the web server's broker (Redis, or the filesystem transport),
    for this test only; `start_worker()` starts it, e.g. once a page has shown a queued job."""
    try:
        yield app_server
    finally:
        app_server.stop_worker()
        print("--- the Celery worker's log ---\n" + app_server.log("celery"))  # shown on failure


@pytest.fixture(autouse=True)
def _shared_with_servers(settings, browser_var_dir) -> None:
    """The test process reads and writes the same media and cache as the servers."""
    settings.MEDIA_ROOT = browser_var_dir / "media"
    if not settings.REDIS_URL:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(browser_var_dir / "cache"),
            }
        }


# --- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def chromium() -> Iterator[object]:
    """Debian's Chromium, never a downloaded one. Playwright's sync API keeps an event loop
    running in this thread, so Django's ORM must be told that the test's own queries are safe."""
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Browsing:
    """Pages of signed-in users, each in its own browser context (own cookies, own stream)."""

    app: App
    browser: object
    contexts: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def page_for(self, persona: Persona, path: str = ""):
        context = self.browser.new_context(
            base_url=self.app.url, viewport={"width": 1400, "height": 1000}
        )
        context.set_default_timeout(10_000)
        # Signed in as the persona: its test client's session is in the shared database.
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": persona.client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": self.app.url,
                }
            ]
        )
        context.add_init_script(CSP_RECORDER)
        self.contexts.append(context)
        page = context.new_page()
        name = persona.user.get_username()
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"{name}: console: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        if path:
            page.goto(path)
        return page

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()


@pytest.fixture
def browsing(app_server: App, chromium, transactional_db) -> Iterator[Browsing]:
    """Open pages as users; at the end no page may have had a script error or a CSP violation.
    The pages close before the database is emptied for the next test."""
    if app_server.web is None or app_server.web.poll() is not None:
        app_server.start_web()  # an earlier test killed it and failed before restarting it
    browsing = Browsing(app=app_server, browser=chromium)
    try:
        yield browsing
    finally:
        browsing.close()
        print("--- uvicorn's log ---\n" + app_server.log())  # shown on failure
    assert browsing.errors == [], "script errors or CSP violations:\n" + "\n".join(browsing.errors)
