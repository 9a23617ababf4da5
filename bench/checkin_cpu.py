"""CPU per check-in inside one Django process, next to the trivial view: a load-independent figure.

    .venv/bin/python bench/checkin_cpu.py --database-url postgres://postgres@127.0.0.1:5432/fleetbench \\
        --redis-url redis://127.0.0.1:6379/10 --requests 3000

wrk throughput on a shared machine moves with the neighbours; the CPU time (process_time) the
web process spends per request does not. This drives the WSGI application in-process (production
settings) with the same requests as bench/checkin.lua and prints one JSON line: CPU µs per
request for /healthz and for the check-in, their ratio, and SQL statements per check-in.
PostgreSQL's and Redis's own CPU is not included (see docs/performance.md).
"""

import argparse
import io
import json
import os
import subprocess
import sys
import time

try:
    from _django import ROOT, setup
except ImportError:
    from bench._django import ROOT, setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--rate-limit", choices=("on", "off"), default="on",
                        help="device-API rate limit on (per-IP limit raised: one address) or off")
    args = parser.parse_args()
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("CACHE_KEY_PREFIX", "fleetbench")
    os.environ["FLEET_RATE_LIMIT_IP_PER_MIN"] = "0" if args.rate_limit == "off" else "100000000"
    if args.rate_limit == "off":
        os.environ["FLEET_RATE_LIMIT_DEVICE_PER_MIN"] = "0"
    os.environ["DJANGO_SECRET_KEY"] = os.environ.get("DJANGO_SECRET_KEY", "bench-" + "x" * 60)
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "false"
    os.environ["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    setup("fleetweb.settings.prod")
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    from apps.fleet.models import Device
    from bench.seed import bench_token

    app = WSGIHandler()
    installed_of = dict(Device.objects.filter(uid__startswith="bench-").order_by("?")
                        .values_list("uid", "installed")[: args.requests])
    uids = list(installed_of)
    if not uids:
        raise SystemExit("no bench devices: run bench/seed.py first")
    seq0 = int(time.time() * 10)

    def call(path: str, body: bytes = b"", token: str = "") -> int:
        environ = {
            "REQUEST_METHOD": "POST" if body else "GET", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1",
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json", "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1",
        }
        if token:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        status: list[str] = []
        response = app(environ, lambda s, h, *a: status.append(s))
        b"".join(response)
        response.close()
        return int(status[0].split()[0])

    def checkin(uid: str, seq: int) -> int:
        body = (
            f'{{"seq":{seq},"installed":{json.dumps(installed_of[uid])},'
            '"health":{"interval_s":900,"crashes":0,"failed_health_checks":0,"reboots":0,"app_restarts":0}}'
        ).encode()
        return call(f"/api/v1/devices/{uid}/checkin", body, bench_token(uid))

    for uid in uids[:50]:  # warm up (imports, connections, caches)
        call("/healthz")
        checkin(uid, seq0)
    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    # Interleaved, one of each in turn, so a busy neighbour slows both alike.
    healthz_s = checkin_s = 0.0
    statuses: dict[int, int] = {}
    with connection.execute_wrapper(count):
        for uid in uids:
            started = time.process_time()
            call("/healthz")
            middle = time.process_time()
            code = checkin(uid, seq0 + 1)
            checkin_s += time.process_time() - middle
            healthz_s += middle - started
            statuses[code] = statuses.get(code, 0) + 1
    healthz_us = healthz_s / len(uids) * 1e6
    checkin_us = checkin_s / len(uids) * 1e6
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout
    print(json.dumps({
        "bench": "checkin_cpu", "devices": Device.objects.filter(uid__startswith="bench-").count(),
        "requests": len(uids), "statuses": statuses, "checkin_buffer": settings.FLEET.get("CHECKIN_BUFFER"),
        "rate_limit": args.rate_limit,
        "healthz_cpu_us": round(healthz_us), "checkin_cpu_us": round(checkin_us),
        "cpu_ratio_healthz_to_checkin": round(healthz_us / checkin_us, 3),
        "sql_statements_per_checkin": round(statements[0] / len(uids), 2),
        "commit": commit.strip(), "date": time.strftime("%Y-%m-%d"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
