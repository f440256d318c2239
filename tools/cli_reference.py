"""docs/CLI.md, generated from the click commands: `python -m tools.cli_reference > docs/CLI.md`.

Every command and subcommand, with its help text and options as `--help` prints them,
plus the exit codes (tools/exit_codes.py), the digest format (tools/digests.py) and how
to enable shell completion. tests/test_operator_cli.py checks the file is current.
"""

from __future__ import annotations

import click

from tools import exit_codes

JSON_NATIVE = ("client cancel", "client place", "client replace", "client status", "promote", "degrade",
               "replay", "run", "journal export")
LONG_RUNNING = ("primary", "standby", "watchdog", "feed", "examples")

HEADER = """# twinbook command reference

Generated from the click commands by `python -m tools.cli_reference > docs/CLI.md`; do not
edit by hand (tests/test_operator_cli.py fails when this file is stale).

## Conventions

- Every failure prints one line on stderr, `twinbook: <what>`, naming the file, offset,
  key or endpoint, and exits with one of the codes below; never a traceback.
- Digests print as 0x-prefixed lowercase hex of their full width (64-bit state digests:
  16 hex digits; CRC-32C chain values: 8; canonical digests: 64), in text and JSON alike.
- Log lines (nodes, watchdog) are ISO-8601 text with key=value fields, or JSON with
  `twinbook --log-format json ...` (or TWINBOOK_LOG_FORMAT=json).
- Machine-readable output: every command that reports takes `--json` (one JSON object
  on stdout), except those whose output is JSON already (JSON_NATIVE below: the client
  commands, `promote`, `degrade`, and the data streams of `replay`, `run` and `journal
  export`) and the long-running ones (LONG_RUNNING: `primary`, `standby`, `watchdog`,
  `feed`, `examples`), whose lines are logs: `twinbook --log-format json`.

## Exit codes

| code | meaning |
|-----:|---------|
"""

COMPLETION = """
## Shell completion

click generates the completion script; add one line to your shell's start-up file:

    # bash (~/.bashrc)
    eval "$(_TWINBOOK_COMPLETE=bash_source twinbook)"
    # zsh (~/.zshrc)
    eval "$(_TWINBOOK_COMPLETE=zsh_source twinbook)"
    # fish (~/.config/fish/completions/twinbook.fish)
    _TWINBOOK_COMPLETE=fish_source twinbook | source
"""


def _sections(command: click.Command, path: str, parent: click.Context | None):
    # The same text whatever the terminal, and whichever context an earlier caller left:
    # the settings `twinbook` runs with, explicitly.
    context = click.Context(command, info_name=path.split()[-1], parent=parent, terminal_width=88,
                            max_content_width=88, help_option_names=["-h", "--help"])
    help_text = command.get_help(context).replace(f"Usage: {path.split()[-1]}", f"Usage: {path}", 1)
    yield f"\n### `{path}`\n\n```\n{help_text}\n```\n"
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            yield from _sections(command.get_command(context, name), f"{path} {name}", context)


def reference() -> str:
    from tools.cli import cli

    rows = "".join(f"| {code} | {text} |\n" for code, text in sorted(exit_codes.DESCRIPTIONS.items()))
    commands = "".join(_sections(cli, "twinbook", None))
    return HEADER + rows + COMPLETION + "\n## Commands\n" + commands


if __name__ == "__main__":
    click.echo(reference(), nl=False)
