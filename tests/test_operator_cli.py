"""One CLI contract (issue 21): every failure path the tests can provoke prints exactly
one clear line on stderr (never a traceback, never an empty message) and exits with the
code tools/exit_codes.py documents for its verdict."""

from __future__ import annotations

import subprocess

import pytest

from tests.node_helpers import ROOT, twinbook_command
from tools import exit_codes

SCENARIO = ROOT / "examples" / "sweep.jsonl"


@pytest.fixture(scope="module")
def corrupt_journal(tmp_path_factory):
    """A journal with one flipped bit in a record in its middle."""
    directory = tmp_path_factory.mktemp("corrupt") / "j"
    imported = subprocess.run(twinbook_command("journal", "import", str(SCENARIO), str(directory)), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    segment = next(directory.glob("*.journal"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    return directory


def failure_paths(tmp_path, corrupt):
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[node]\nclinet_port = 1\n")
    existing = tmp_path / "certs-existing"
    existing.mkdir()
    (existing / "ca.pem").write_text("x")
    client = ("client", "place", "--endpoint", "127.0.0.1:1", "--client-order-id", "x", "--symbol", "AAPL",
              "--side", "buy", "--qty", "1", "--price", "1", "--timeout", "1")
    return [
        (("config", "check", str(bad_config)), exit_codes.USAGE, "clinet_port"),
        (("config", "check", str(tmp_path / "absent.toml")), exit_codes.USAGE, "absent.toml"),
        (("primary", "--data", str(tmp_path / "n"), "--config", str(bad_config)), exit_codes.USAGE, "clinet_port"),
        (("primary", "--data", str(tmp_path / "n2"), "--port-base", "0", "--certs", str(tmp_path / "nowhere")),
         exit_codes.OPERATING_FAULT, "nowhere"),
        (("journal", "inspect", str(tmp_path / "absent")), exit_codes.USAGE, "absent"),
        (("journal", "verify", str(tmp_path / "absent")), exit_codes.USAGE, "absent"),
        (("snapshot", "list", str(tmp_path / "absent")), exit_codes.USAGE, "absent"),
        (("verify", str(tmp_path / "absent")), exit_codes.USAGE, "absent"),
        (("replay", str(corrupt)), exit_codes.OPERATING_FAULT, "offset"),
        (("journal", "frobnicate"), exit_codes.USAGE, "frobnicate"),
        (("client", "place", "--symbol", "AAPL"), exit_codes.USAGE, "--client-order-id"),
        (client, exit_codes.OPERATING_FAULT, "127.0.0.1:1"),
        (("status", "127.0.0.1:nope", "--no-tls"), exit_codes.USAGE, "HOST:PORT"),
        (("certs", "init", str(existing)), exit_codes.OPERATING_FAULT, "never overwritten"),
    ]


def test_every_failure_path_prints_one_line_and_its_documented_exit_code(tmp_path, corrupt_journal):
    for arguments, code, named in failure_paths(tmp_path, corrupt_journal):
        result = subprocess.run(twinbook_command(*arguments), cwd=ROOT, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        # `replay` prints the rows of the good records on stdout first, then its one line.
        assert len(lines) == 1, (arguments, result.stderr)
        assert lines[0].startswith("twinbook: ") and len(lines[0]) > len("twinbook: ") + 10, (arguments, lines)
        assert "Traceback" not in result.stderr and named in lines[0], (arguments, lines)
        assert result.returncode == code, (arguments, result.returncode, lines)
        assert code in exit_codes.DESCRIPTIONS


def test_the_same_corruption_is_the_same_verdict_from_verify_and_journal_verify(corrupt_journal):
    codes = {subprocess.run(twinbook_command(*arguments, str(corrupt_journal)), cwd=ROOT, capture_output=True,
                            text=True, timeout=120).returncode
             for arguments in (("verify",), ("journal", "verify"))}
    assert codes == {exit_codes.CHECK_FAILED}


def test_an_exception_without_text_is_named_by_its_type():
    assert exit_codes.one_line(TimeoutError()) == "TimeoutError"
    assert exit_codes.one_line(ConnectionRefusedError(111, "Connection refused")) == "Connection refused"


def test_the_command_reference_is_current():
    import sys

    # In a fresh interpreter: click caches each command's help option the first time a
    # context builds it, and tests that invoke one subcommand alone build it differently.
    generated = subprocess.run([sys.executable, "-m", "tools.cli_reference"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
    assert generated.returncode == 0, generated.stderr
    assert (ROOT / "docs" / "CLI.md").read_text() == generated.stdout, \
        "docs/CLI.md is stale: run `python -m tools.cli_reference > docs/CLI.md`"


def test_shell_completion_is_generated_by_click():
    import os

    result = subprocess.run(twinbook_command(), cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "_TWINBOOK_COMPLETE": "bash_source"})
    assert result.returncode == 0 and "_twinbook_completion" in result.stdout.replace("-", "_"), result.stdout[:200]


def test_every_command_has_json_output_or_is_documented_as_json_or_long_running():
    import click

    from tools.cli import cli
    from tools.cli_reference import JSON_NATIVE, LONG_RUNNING

    def leaves(command, path):
        if isinstance(command, click.Group):
            for name in command.list_commands(None):
                yield from leaves(command.get_command(None, name), f"{path} {name}".strip())
        else:
            yield path, command

    without = {path for path, command in leaves(cli, "")
               if not any("--json" in parameter.opts for parameter in command.params)}
    assert without == set(JSON_NATIVE) | set(LONG_RUNNING), without ^ (set(JSON_NATIVE) | set(LONG_RUNNING))
