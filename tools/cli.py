"""The `twinbook` command-line interface: the click group and its subcommands.

Every subcommand lives in its own module under tools/ and is registered here. This is
the only place where operating errors become messages and exit codes: the packages
below raise their own exception trees, and `main` maps them.

Exit codes: 0 success; 1 a check found a problem (verify, determinism-check, status,
a refused promote); 2 bad usage (click's own); 3 an operating fault (corrupt journal,
unreadable snapshot store, missing data directory), with the message naming the file
and offset; 4 a primary stepped down (a node of a newer epoch exists); 5 a promotion
failed half-way (the node neither follows nor serves, so it exits).
"""

from __future__ import annotations

import sys

import click

EXIT_OPERATING_FAULT = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twinbook")
def cli() -> None:
    """twinbook: an event-sourced, replicated exchange matching engine."""


def _register() -> None:
    # Imported here rather than at the top so that each subcommand module can
    # import helpers from tools/ without a cycle.
    from tools import (
        commands_audit,
        commands_bench,
        commands_certs,
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
    from replica.errors import ReplicaError
    from statemachine.errors import StateMachineError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("twinbook: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (journal.JournalError, snapshots.SnapshotError, ReplicaError, StateMachineError) as error:
        click.echo(f"twinbook: {type(error).__name__}: {error}", err=True)
        sys.exit(EXIT_OPERATING_FAULT)
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        click.echo(f"twinbook: {error.strerror or error}{where}", err=True)
        sys.exit(EXIT_OPERATING_FAULT)
