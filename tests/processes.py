"""Real processes for integration tests: a Celery worker bound to the test database."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test_<name> database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="fleetweb.settings.test",
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_TASK_DEFAULT_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process's group (it was started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@contextmanager
def celery_worker(*, concurrency: int = 1, name: str = "test", extra_args: tuple[str, ...] = ()):
    """Run `celery worker` on the test queue; yields the Popen; stops it (and its children) after."""
    from fleetweb.celery import app

    log = open(ROOT / ".fleet" / f"worker-{name}.log", "w") if (ROOT / ".fleet").is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-l", "INFO", "--concurrency", str(concurrency),
         "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-n", f"{name}-{os.getpid()}@%h", "--without-gossip",
         "--without-mingle", *extra_args],
        cwd=ROOT, env=process_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early with code {proc.returncode}")
            replies = app.control.ping(timeout=0.5) or []
            if any(f"{name}-{os.getpid()}@" in next(iter(r)) for r in replies):
                break
        else:
            raise RuntimeError("celery worker did not answer a ping within 60 s")
        yield proc
    finally:
        stop_process_group(proc)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def web_server(*, kind: str = "uvicorn", name: str = "web", **env_extra: str):
    """Serve fleetweb on a free loopback port, on the test database: uvicorn (ASGI) or
    gunicorn (WSGI sync workers, the device API's production server). Yields the base URL."""
    import socket

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_CSRF_TRUSTED_ORIGINS=url, **env_extra)
    if kind == "gunicorn":
        argv = [sys.executable, "-m", "gunicorn", "fleetweb.wsgi:application", "-k", "sync", "-w", "2",
                "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    else:
        argv = [sys.executable, "-m", "uvicorn", "fleetweb.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]
    log_path = ROOT / ".fleet" / f"{name}-{kind}.log"
    log_path.parent.mkdir(exist_ok=True)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start; see {log_path}") from None
                time.sleep(0.05)
        yield url
    finally:
        stop_process_group(proc)
