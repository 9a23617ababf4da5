"""Production settings pass Django's deployment checks and refuse to start without a secret."""

import os
import subprocess
import sys

from tests.processes import ROOT


def _check(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "fleetweb.settings.prod", **env_extra})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_it_passes_check_deploy_with_production_settings():
    result = _check({"DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-production-secret-value-1234567890",
                     "DJANGO_ALLOWED_HOSTS": "fleet.example.com"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_production_without_a_secret_key():
    result = _check({})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
