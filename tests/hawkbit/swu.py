"""Build a signed SWUpdate image (.swu) and run SWUpdate's suricatta hawkBit client against a server."""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import ROOT, free_port, process_env, stop_process_group


def swupdate_binary() -> str:
    """SWUpdate on PATH; missing it fails under CI (the launcher installs it) and skips elsewhere."""
    found = shutil.which("swupdate") or (os.path.exists("/usr/bin/swupdate") and "/usr/bin/swupdate")
    if not found or not shutil.which("cpio") or not shutil.which("openssl"):
        message = "SWUpdate, cpio and openssl are needed: apt-get install swupdate cpio openssl"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(args: list[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(args, cwd=cwd, input=stdin, check=True, capture_output=True).stdout


def make_certificate(folder: Path) -> Path:
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", "key.pem", "-out", "cert.pem", "-nodes",
          "-days", "30", "-subj", "/CN=fleet-test"], folder)
    return folder / "cert.pem"


def build_swu(folder: Path, *, target: Path, payload: bytes, version: str = "1.0.1", bad_hash: bool = False) -> Path:
    """An image whose install only writes `payload` to `target`; `bad_hash` makes the install fail."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "payload.txt").write_bytes(payload)
    digest = hashlib.sha256(b"something else" if bad_hash else payload).hexdigest()
    (folder / "sw-description").write_text(
        "software =\n{\n"
        f'\tversion = "{version}";\n'
        '\tdescription = "fleet test image";\n'
        '\thardware-compatibility: [ "1.0" ];\n'
        "\tfiles: (\n"
        f'\t\t{{ filename = "payload.txt"; path = "{target}"; sha256 = "{digest}"; }}\n'
        "\t);\n}\n"
    )
    cert_dir = folder.parent
    _run(["openssl", "cms", "-sign", "-in", "sw-description", "-out", "sw-description.sig", "-signer",
          str(cert_dir / "cert.pem"), "-inkey", str(cert_dir / "key.pem"), "-outform", "DER", "-nosmimecap",
          "-binary"], folder)
    image = _run(["cpio", "-o", "-H", "crc", "--quiet"], folder, b"sw-description\nsw-description.sig\npayload.txt\n")
    swu = folder / "update.swu"
    swu.write_bytes(image)
    return swu


@contextmanager
def uvicorn_server(log: Path, *, media_root: str):
    """fleetweb under uvicorn on a free loopback port, on the test database; yields its base URL."""
    import urllib.request

    port = free_port()
    env = process_env(DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "fleetweb.settings.test"),
                      MEDIA_ROOT=media_root, DB_CONN_MAX_AGE="0")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.hawkbit.asgi:application", "--host", "127.0.0.1", "--port",
             str(port), "--no-access-log", "--lifespan", "off"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not answer within 30 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        stop_process_group(proc)


@contextmanager
def suricatta(*, binary: str, url: str, device: str, token: str, cert: Path, workdir: Path, log: Path,
              confirm: int | None = None):
    """SWUpdate's suricatta daemon in the foreground, polling every 2 s; killed on exit."""
    args = f"-t DEFAULT -u {url} -i {device} -k {token} -p 2"
    if confirm is not None:
        args += f" -c {confirm}"
    env = dict(os.environ, TMPDIR=str(workdir))  # its IPC sockets live in TMPDIR: parallel runs do not collide
    with open(log, "a") as out:
        proc = subprocess.Popen([binary, "-v", "-H", "test:1.0", "-k", str(cert), "-u", args], cwd=workdir, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process_group(proc)
