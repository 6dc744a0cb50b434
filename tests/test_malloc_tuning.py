"""The CLI's glibc heap settings: applied on glibc Linux, skipped when the user chose their own."""
import os
import subprocess
import sys

import pytest

CALL = "from lasro.malloc_tuning import keep_freed_memory; print(keep_freed_memory())"


def run(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LASRO_MALLOC_TUNING"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CALL], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


glibc_linux = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                 reason="glibc only")


@glibc_linux
def test_applied_on_glibc():
    assert run({}) == "True"


@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "2"}, {"LASRO_MALLOC_TUNING": "0"}])
def test_user_settings_win(env):
    assert run(env) == "False"


def test_cli_applies_it(monkeypatch):
    from lasro import cli

    calls = []
    monkeypatch.setattr("lasro.malloc_tuning.keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["rewards"]) == 0
    assert calls == [1]
