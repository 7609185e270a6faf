"""`stripe-migration demo` in a subprocess, as a user runs it on a fresh machine."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from stripe_migration.cli.demo import DEMO_BAD_FRACTION, DEMO_SEED
from stripe_migration.sandbox.sample_data import generate_catalog
from stripe_migration.sandbox.stack import ENV_KEYS

# Each starts the whole stack in subprocesses (and `dagster dev`): tens of seconds on 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: The console script, run the way pip installs it (with a known program name).
COMMAND = [
    sys.executable,
    "-c",
    "from stripe_migration.cli import main; main(prog_name='stripe-migration')",
]


def _clean_env(tmp: Path) -> dict[str, str]:
    """The user's environment without any of our settings, temporary files under ``tmp``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ENV_KEYS
        and not k.startswith(("STRIPE_", "SUPABASE_", "DAGSTER_", "XDG_RUNTIME"))
    }
    env["TMPDIR"] = str(tmp)
    return env


def _workdir(output: str) -> Path:
    """The demo's temporary folder, as it announces it."""
    match = re.search(r"starting the sandbox in (\S+)", output)
    assert match, output[-2000:]
    return Path(match[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if text in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def test_demo_prints_the_report_and_leaves_nothing(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run(
        [*COMMAND, "demo", "--products", "50"],
        cwd=tmp_path,
        env=_clean_env(temp),
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    catalog = generate_catalog(50, seed=DEMO_SEED, bad_fraction=DEMO_BAD_FRACTION)
    valid, bad = 50 - len(catalog.defects), len(catalog.defects)
    assert bad > 0
    assert "# Catalogue migration report" in result.stdout
    assert f"| created | {valid} |" in result.stdout
    assert f"created {valid}, updated 0" in result.stdout
    assert f"failed {bad} " in result.stdout
    assert "## Failed products" in result.stdout  # with the reasons
    assert re.search(r"[\d.]+ s, [\d.]+ products/s", result.stdout)
    assert "stripe_catalog: applied" in result.stderr
    workdir = _workdir(result.stderr)
    assert not workdir.exists()  # the temporary folder is gone
    assert list(temp.iterdir()) == []  # and nothing else was left in $TMPDIR
    assert not (tmp_path / ".dagster_home").exists()


def test_ctrl_c_during_demo_ui_stops_everything(tmp_path: Path) -> None:
    unused_port = _free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    demo = subprocess.Popen(
        [*COMMAND, "demo", "--products", "10", "--ui", "--port", str(unused_port)],
        cwd=tmp_path,
        env=_clean_env(temp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # our SIGINT goes to the demo only, as the terminal's would
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 240
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("Dagster UI:") or time.monotonic() > deadline:
                break
        assert any(line.startswith("Dagster UI:") for line in lines), "".join(lines[-30:])
        assert (
            httpx.get(f"http://127.0.0.1:{unused_port}/server_info", timeout=10).status_code == 200
        )
        workdir = _workdir("".join(lines))
        started = psutil.Process(demo.pid).children(recursive=True)
        started += _processes_mentioning(str(workdir))  # PostgreSQL is not our child
        assert len(started) >= 5  # gateway, emulator, dagster dev, webserver, daemon...

        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
        lines.append(rest)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    output = "".join(lines)
    assert demo.returncode == 0, output[-3000:]
    assert "stopped; removed" in output
    deadline = time.monotonic() + 10
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(started) == []
    assert _processes_mentioning(str(workdir)) == []
    assert not workdir.exists()
    assert list(temp.iterdir()) == []
