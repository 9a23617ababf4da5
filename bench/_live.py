"""Real processes and logged-in websocket clients for the live benches (halt under load, fan-out).

Every process runs with the production settings (DEBUG off) on the bench database named by
DATABASE_URL and the Redis named by REDIS_URL; each is started in its own session and stopped
by its process group.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Self

try:
    from _django import ROOT
except ImportError:
    from bench._django import ROOT

LOGS = Path(tempfile.gettempdir()) / "fleet-bench-logs"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="fleetweb.settings.prod",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY", "bench-" + "x" * 60),
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # Load generators send from one address far above the production per-IP limit.
        FLEET_RATE_LIMIT_IP_PER_MIN="0",
        FLEET_RATE_LIMIT_DEVICE_PER_MIN="0",
    )
    env.update(extra)
    return env


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_port(proc: subprocess.Popen, port: int, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {LOGS}") from None
            time.sleep(0.1)


@contextmanager
def process(name: str, argv: list[str], env: dict[str, str], *, port: int | None = None):
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / f"{name}.log", "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if port is not None:
            _wait_port(proc, port, name)
        yield proc
    finally:
        stop(proc)


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 2):
    port = free_port()
    with process("gunicorn", [sys.executable, "-m", "gunicorn", "fleetweb.wsgi:application", "-w", str(workers),
                              "-k", "sync", "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning"],
                 env, port=port) as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextmanager
def uvicorn(env: dict[str, str], *, workers: int = 1):
    port = free_port()
    with process("uvicorn", [sys.executable, "-m", "uvicorn", "fleetweb.asgi:application", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
                 env, port=port) as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextmanager
def celery(env: dict[str, str], *, beat: bool = True, concurrency: int = 2):
    # The worker consumes the settings' default queue, the one beat and enqueue_evaluate send to.
    with process("celery-worker", [sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-l", "WARNING",
                                   "--concurrency", str(concurrency), "-n", f"bench-{os.getpid()}@%h",
                                   "--without-gossip", "--without-mingle"], env) as worker:
        if not beat:
            yield worker, None
            return
        schedule = Path(tempfile.mkdtemp(prefix="fleet-beat-")) / "schedule"
        with process("celery-beat", [sys.executable, "-m", "celery", "-A", "fleetweb", "beat", "-l", "WARNING",
                                     "-s", str(schedule)], env) as beat_proc:
            yield worker, beat_proc


@contextmanager
def wrk_load(base: str, env: dict[str, str], devices: list[tuple[str, dict]], *, duration: int,
             connections: int = 32, threads: int = 2):
    """bench/checkin.lua (bench/checkin_load.py's script) against `base`, in the background.

    `devices`: (uid, installed) pairs; each device reports what it runs (the steady state)."""
    from bench.seed import bench_token

    tokens = Path(tempfile.mkstemp(prefix="fleet-tokens-")[1])
    tokens.write_text("".join(f"{uid} {bench_token(uid)} {json.dumps(installed, separators=(',', ':'))}\n"
                              for uid, installed in devices))
    wrk_env = {**env, "FLEET_TOKENS": str(tokens), "FLEET_THREADS": str(threads)}
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / "wrk.log", "w") as out:
        proc = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
                                 "--timeout", "5s", "-s", str(ROOT / "bench" / "checkin.lua"), base],
                                env=wrk_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            # SIGINT: wrk stops early and still prints its summary (the Lua done() hook).
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        stop(proc)
        tokens.unlink(missing_ok=True)


def wrk_summary() -> dict | None:
    text = (LOGS / "wrk.log").read_text() if (LOGS / "wrk.log").exists() else ""
    for line in text.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON "):])
    return None


def session_cookie(username: str = "bench-admin") -> str:
    """A logged-in session (database sessions) for the bench's admin user: the cookie's value."""
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_superuser": True, "is_staff": True})
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


class RssSampler:
    """Peak resident memory (MB) of each named process tree's largest process, sampled every 0.5 s."""

    def __init__(self, roots: dict[str, int]):
        import threading

        self.roots, self.peak = roots, {name: 0.0 for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for proc in procs:
                    try:
                        self.peak[name] = max(self.peak[name], proc.memory_info().rss / 2**20)
                    except psutil.NoSuchProcess:
                        pass
            self._stop.wait(0.5)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, float]:
        return {name: round(mb, 1) for name, mb in self.peak.items()}
