"""The `twinbook` command-line interface: the click group and its subcommands.

Every subcommand lives in its own module under tools/ and is registered here. This is
the only place where operating errors become messages and exit codes: the packages
below raise their own exception trees, and `main` maps them.

Exit codes are defined and described in tools/exit_codes.py (and listed in docs/CLI.md).
Whatever fails, the user sees one line on stderr, `twinbook: <what>`, never a traceback
and never an empty message: an exception with no text is named by its type, and an
unexpected one (a bug) is reported as an internal error in one line with exit 3
(TWINBOOK_TRACEBACK=1 shows the traceback for a bug report).
"""

from __future__ import annotations

import os
import sys

import click

from tools import exit_codes
from tools.exit_codes import one_line

EXIT_OPERATING_FAULT = exit_codes.OPERATING_FAULT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twinbook")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="TWINBOOK_LOG_FORMAT", help="Log lines on stderr: ISO-8601 text with key=value fields, or JSON.")
def cli(log_format: str) -> None:
    """twinbook: an event-sourced, replicated exchange matching engine."""
    from tools.logs import configure

    configure(log_format)


def _register() -> None:
    # Imported here rather than at the top so that each subcommand module can
    # import helpers from tools/ without a cycle.
    from tools import (
        commands_audit,
        commands_bench,
        commands_certs,
        commands_config,
        commands_journal,
        commands_load,
        commands_node,
        commands_run,
        commands_simulate,
        commands_snapshot,
        commands_status,
        commands_validate,
    )

    cli.add_command(commands_run.run)
    cli.add_command(commands_run.demo)
    cli.add_command(commands_run.examples)
    cli.add_command(commands_bench.bench)
    cli.add_command(commands_certs.certs_group)
    cli.add_command(commands_config.config_group)
    cli.add_command(commands_journal.journal_group)
    cli.add_command(commands_snapshot.snapshot_group)
    cli.add_command(commands_node.primary)
    cli.add_command(commands_node.client)
    cli.add_command(commands_node.feed)
    cli.add_command(commands_node.hash_token_command)
    cli.add_command(commands_node.standby)
    cli.add_command(commands_node.promote)
    cli.add_command(commands_node.degrade)
    cli.add_command(commands_node.watchdog)
    cli.add_command(commands_status.status)
    cli.add_command(commands_validate.validate)
    cli.add_command(commands_audit.replay)
    cli.add_command(commands_audit.verify)
    cli.add_command(commands_audit.determinism_check)
    cli.add_command(commands_load.loadgen)
    cli.add_command(commands_simulate.simulate)


_register()


def main() -> None:
    import journal
    import snapshots
    from replica.config import ConfigError
    from replica.errors import ReplicaError
    from statemachine.errors import StateMachineError

    try:
        cli.main(prog_name="twinbook", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("twinbook: aborted", err=True)
        sys.exit(exit_codes.INTERRUPTED)
    except click.UsageError as error:  # one line with the way to help, not click's three
        where = error.ctx.command_path if error.ctx is not None else "twinbook"
        click.echo(f"twinbook: {one_line(click.ClickException(error.format_message()))} "
                   f"(see `{where} --help`)", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"twinbook: {' '.join(error.format_message().split()) or type(error).__name__}", err=True)
        sys.exit(error.exit_code)
    except ConfigError as error:  # the same verdict as `config check`: unusable input
        click.echo(f"twinbook: {one_line(error)}", err=True)
        sys.exit(exit_codes.USAGE)
    except (journal.JournalError, snapshots.SnapshotError, ReplicaError, StateMachineError) as error:
        click.echo(f"twinbook: {type(error).__name__}: {one_line(error)}", err=True)
        sys.exit(exit_codes.OPERATING_FAULT)
    except OSError as error:
        click.echo(f"twinbook: {one_line(error)}", err=True)
        sys.exit(exit_codes.OPERATING_FAULT)
    except Exception as error:  # a bug: still one line, never a traceback
        if os.environ.get("TWINBOOK_TRACEBACK"):
            raise
        click.echo(f"twinbook: internal error: {type(error).__name__}: {one_line(error)}", err=True)
        sys.exit(exit_codes.OPERATING_FAULT)
