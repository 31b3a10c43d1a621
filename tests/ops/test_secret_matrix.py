"""No secret reaches any output: every command, as a process, against bad and good secret values.

Each case sets one secret-bearing setting (or a secrets file) to a value built around the marker
`S3kr1t`, runs every command as a subprocess against closed local ports, and greps stdout and
stderr (and, for `run`, /metrics, /healthz and /readyz) for the marker. A value that cannot be
parsed must exit 2 with one line naming the variable; a parseable one must fail (or, for `run`,
wait) cleanly with the command's documented exit code. Logs run at DEBUG for parseable values:
secrets must not leak at any level.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MARK = "S3kr1t"
A, B = f"{MARK}Alpha", f"{MARK}Bravo"  # two halves: a leak of either half is caught


def closed_port() -> int:
    """A local port nobody listens on (bound, then released): connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Case:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # STREAM_INDEXER_SECRETS_DIR contents
    bad: str | None = None  # the variable an unparseable value must be named by


P = "{port}"  # replaced by a closed port per run
DSN, SOURCE, HOSTS = "POSTGRES__DSN", "SOURCE__DSN", "OPENSEARCH__HOSTS"
BAD_CASES = [
    Case("dsn-raw-hash", {DSN: f"postgresql://u:{A}#{B}@127.0.0.1:{P}/db"}, bad=DSN),
    Case("dsn-raw-hash-numeric", {DSN: f"postgresql://u:123#{B}@127.0.0.1:{P}/db"}, bad=DSN),
    Case("dsn-raw-question", {DSN: f"postgresql://u:{A}?{B}@127.0.0.1:{P}/db"}, bad=DSN),
    Case("dsn-no-scheme", {DSN: f"u:{A}@127.0.0.1:{P}/db"}, bad=DSN),
    Case("source-dsn-raw-slash", {SOURCE: f"postgresql://u:{A}/{B}@127.0.0.1:{P}/db"}, bad=SOURCE),
    Case("hosts-no-scheme", {HOSTS: f"user:{A}@127.0.0.1:{P}"}, bad=HOSTS),
    Case("hosts-raw-hash", {HOSTS: f"http://user:{A}#{B}@127.0.0.1:{P}"}, bad=HOSTS),
    Case(
        "sasl-incomplete",
        {
            "KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA__SASL_USERNAME": A,
            "KAFKA__SASL_PASSWORD": B,
        },
        bad="KAFKA__SASL_MECHANISM",
    ),
    Case(
        "secrets-file-dsn-raw-hash",
        files={"postgres__dsn": f"postgresql://u:{A}#{B}@127.0.0.1:{P}/db"},
        bad=DSN,
    ),
]

SASL = {"KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA__SASL_MECHANISM": "PLAIN"}
GOOD_CASES = [
    Case("dsn-raw-at", {"POSTGRES__DSN": f"postgresql://u:{A}@{B}@127.0.0.1:{P}/db"}),
    Case("dsn-raw-percent", {"POSTGRES__DSN": f"postgresql://u:{A}%{B}@127.0.0.1:{P}/db"}),
    Case("dsn-encoded", {"POSTGRES__DSN": f"postgresql://u:{A}%23%40{B}@127.0.0.1:{P}/db"}),
    Case("dsn-query-password", {"POSTGRES__DSN": f"postgresql://u@127.0.0.1:{P}/db?password={A}"}),
    Case("source-dsn", {"SOURCE__DSN": f"postgresql://u:{A}@{B}@127.0.0.1:{P}/db"}),
    Case("hosts-raw-at", {"OPENSEARCH__HOSTS": f"http://user:{A}@{B}@127.0.0.1:{P}"}),
    Case("os-password", {"OPENSEARCH__USERNAME": "admin", "OPENSEARCH__PASSWORD": f"{A}@#%:/{B}"}),
    Case("sasl", {**SASL, "KAFKA__SASL_USERNAME": A, "KAFKA__SASL_PASSWORD": f"{B}#@%"}),
    Case(
        "secrets-files",
        {**SASL, "OPENSEARCH__USERNAME": "admin"},
        files={
            "kafka__sasl_username": A,
            "kafka__sasl_password": B,
            "opensearch__password": f"{A}-os",
            "postgres__dsn": f"postgresql://u:{B}@x@127.0.0.1:{P}/db",
        },
    ),
]

#: command -> exit code with every server unreachable (run: stopped by SIGTERM while waiting)
COMMANDS: dict[str, tuple[list[str], int]] = {
    "config show": (["config", "show"], 0),
    "migrate up": (["migrate", "up"], 1),
    "migrate status": (["migrate", "status"], 1),
    "dlq list": (["dlq", "list"], 1),
    "dlq stats": (["dlq", "stats"], 1),
    "produce": (["produce", "-"], 1),
    "outbox relay": (["outbox", "relay"], 1),
    "dev": (["dev"], 2),  # only run with unparseable values: it would start the embedded stack
    "run": (["run"], 0),
}


def environment(case: Case, tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAM_INDEXER_")}
    defaults = {
        "KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "OPENSEARCH__HOSTS": f"http://127.0.0.1:{port}",
        "POSTGRES__DSN": f"postgresql://u@127.0.0.1:{port}/db",
        "POSTGRES__COMMAND_TIMEOUT_S": "3",
        "METRICS__PORT": "0",
    }
    settings = {k: v for k, v in defaults.items() if k.lower() not in case.files}  # env beats files
    settings.update({**case.env, **extra})
    env.update({f"STREAM_INDEXER_{k}": v.replace(P, str(port)) for k, v in settings.items()})
    if case.files:
        secrets = tmp_path / "secrets"
        secrets.mkdir(exist_ok=True)
        for name, text in case.files.items():
            (secrets / name).write_text(text.replace(P, str(port)))
        env["STREAM_INDEXER_SECRETS_DIR"] = str(secrets)
    return env


def run_command(
    argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run one command; one that outlives `timeout_s` gets SIGINT (so `dev` stops the servers
    it started) and is reported with exit code -1."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_indexer", *argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
        code = process.returncode
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        code = -1
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def leaks(text: str) -> bool:
    return MARK in text


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.name)
def test_unparseable_secret_values_exit_2_with_one_line_naming_the_variable(
    case: Case, tmp_path: Path
) -> None:
    env = environment(case, tmp_path, closed_port())
    assert case.bad is not None
    variable = f"STREAM_INDEXER_{case.bad}"

    def one(name: str) -> str | None:
        result = run_command(COMMANDS[name][0], env, tmp_path, timeout_s=15)
        output = result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        if leaks(output):
            return f"{name}: secret in output: {output!r}"
        if result.returncode != 2 or result.stdout or len(lines) != 1 or variable not in lines[0]:
            return f"{name}: exit {result.returncode}: {result.stdout!r} {result.stderr!r}"
        return None

    with ThreadPoolExecutor(max_workers=3) as pool:
        problems = [p for p in pool.map(one, COMMANDS) if p]
    assert not problems, "\n".join(problems)


def test_at_debug_a_config_error_adds_a_traceback_without_the_secret(tmp_path: Path) -> None:
    case = BAD_CASES[0]
    env = environment(case, tmp_path, closed_port(), LOG__LEVEL="DEBUG")
    result = run_command(["migrate", "up"], env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "STREAM_INDEXER_POSTGRES__DSN" in result.stderr
    assert not leaks(result.stdout + result.stderr), result.stderr


@pytest.mark.parametrize("case", GOOD_CASES, ids=lambda c: c.name)
def test_parseable_secret_values_never_reach_any_output(case: Case, tmp_path: Path) -> None:
    port = closed_port()
    env = environment(case, tmp_path, port, LOG__LEVEL="DEBUG")

    def one(name: str) -> str | None:
        argv, expected = COMMANDS[name]
        if name == "run":
            return run_and_probe(env, tmp_path)
        result = run_command(argv, env, tmp_path)
        output = result.stdout + result.stderr
        if leaks(output):
            return f"{name}: secret in output: {output!r}"
        if result.returncode != expected:
            return f"{name}: exit {result.returncode} (expected {expected}): {output!r}"
        return None

    names = [name for name in COMMANDS if name != "dev"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        problems = [p for p in pool.map(one, names) if p]
    assert not problems, "\n".join(problems)


def run_and_probe(env: dict[str, str], cwd: Path) -> str | None:
    """`run` waits for its servers: read its endpoints while it does, then SIGTERM it."""
    env = {**env, "STREAM_INDEXER_METRICS__HOST": "127.0.0.1"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    env["STREAM_INDEXER_METRICS__PORT"] = str(metrics_port)
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_indexer", "run"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bodies: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60  # start-up alone can take 20 s on a loaded machine
        while time.monotonic() < deadline and process.poll() is None and len(bodies) < 3:
            for path in ("/metrics", "/healthz", "/readyz"):
                try:
                    url = f"http://127.0.0.1:{metrics_port}{path}"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        bodies[path] = response.read().decode()
                except urllib.error.HTTPError as error:  # 503 from a probe: its body counts
                    bodies[path] = error.read().decode()
                except OSError:
                    time.sleep(0.1)
                    break
        time.sleep(1.0)  # let a start-up retry or two be logged
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    output = stdout + stderr + json.dumps(bodies)
    if set(bodies) != {"/metrics", "/healthz", "/readyz"}:
        return (
            f"run: endpoints not all read ({sorted(bodies)}); exit {process.returncode}: {stderr!r}"
        )
    if leaks(output):
        return f"run: secret in output: {output!r}"
    if process.returncode != 0:
        return f"run: exit {process.returncode} after SIGTERM: {stderr!r}"
    return None
