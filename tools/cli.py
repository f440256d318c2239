"""The `twinbook` command-line interface: the click group and its subcommands.

Every subcommand lives in its own module under tools/ and is registered here. This
is the only place where operating errors become messages and exit codes: the
packages below raise their own exception trees, and `main` maps them.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twinbook")
def cli() -> None:
    """twinbook: an event-sourced, replicated exchange matching engine."""


def _register() -> None:
    # Imported here rather than at the top so that each subcommand module can
    # import `cli` helpers from this module without a cycle.
    from tools import commands_bench, commands_run

    cli.add_command(commands_run.run)
    cli.add_command(commands_run.demo)
    cli.add_command(commands_bench.bench)


_register()


def main() -> None:
    cli()
