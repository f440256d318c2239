"""`twinbook validate`: check the engine against ground truth from outside the project.

`twinbook validate lobster MESSAGE.csv ORDERBOOK.csv` replays real NASDAQ order flow,
as reconstructed by LOBSTER, through the state machine and reports how often the
engine's book equals NASDAQ's after each message and how often price-time priority
picks the resting order NASDAQ executed. The method lives in tools/lobster.py and is
explained, with the measured figures, in docs/LOBSTER.md.

This module only turns options into a call of `tools.lobster.validate_files` and its
errors into clear messages (click.ClickException, exit code 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click
import msgspec

from tools.lobster import LobsterFormatError, ReplayError, orderbook_levels, validate_files


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def validate() -> None:
    """Check the engine against ground truth from outside the project."""


def _existing_file(path: str, what: str) -> Path:
    candidate = Path(path)
    if not candidate.exists():
        raise click.ClickException(f"{what} not found: {path}")
    if not candidate.is_file():
        raise click.ClickException(f"{what} is not a file: {path}")
    return candidate


@validate.command()
@click.argument("message_file", metavar="MESSAGE.csv", type=click.Path(dir_okay=True))
@click.argument("orderbook_file", metavar="ORDERBOOK.csv", type=click.Path(dir_okay=True))
@click.option(
    "--levels", type=click.IntRange(min=1), default=None,
    help="Compare the top N levels (default: every level in the orderbook file).",
)
@click.option("--symbol", default=None, help="Instrument symbol (default: the ticker in the file name).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--examples", type=click.IntRange(min=0), default=5, show_default=True,
    help="Examples kept per mismatch class.",
)
@click.option(
    "--lookahead/--no-lookahead", default=True, show_default=True,
    help="Let re-synchronisation spare orders that a later message still names.",
)
@click.option(
    "--commands-out", type=click.Path(dir_okay=False, writable=True), default=None,
    help="Write every engine command applied as a JSON-lines scenario (replayable with `twinbook run`).",
)
def lobster(
    message_file: str,
    orderbook_file: str,
    levels: Optional[int],
    symbol: Optional[str],
    as_json: bool,
    examples: int,
    lookahead: bool,
    commands_out: Optional[str],
) -> None:
    """Replay a LOBSTER MESSAGE.csv through the engine and compare it with ORDERBOOK.csv.

    After every message the engine's top N levels are compared with the orderbook row;
    for every execution of a visible order, the resting order FIFO picks is compared
    with the one NASDAQ executed. Differences the file cannot explain away are
    classified; the engine is re-synchronised with real, counted engine commands.
    """
    message_path = _existing_file(message_file, "LOBSTER message file")
    orderbook_path = _existing_file(orderbook_file, "LOBSTER orderbook file")
    try:
        file_levels = orderbook_levels(orderbook_path)
    except LobsterFormatError as error:
        raise click.ClickException(str(error)) from None
    if levels is not None and levels > file_levels:
        raise click.ClickException(
            f"--levels {levels}: {orderbook_path} holds only {file_levels} levels"
        )
    sink_file = None
    sink = None
    if commands_out is not None:
        try:
            sink_file = open(commands_out, "wb")
        except OSError as error:
            raise click.ClickException(f"cannot write {commands_out}: {error.strerror}") from None
        encode = msgspec.json.Encoder().encode

        def sink(record: dict) -> None:
            sink_file.write(encode(record) + b"\n")

    try:
        report = validate_files(
            message_path, orderbook_path, levels=levels, symbol=symbol,
            example_limit=examples, command_sink=sink, lookahead=lookahead,
        )
    except LobsterFormatError as error:
        raise click.ClickException(str(error)) from None
    except ReplayError as error:
        raise click.ClickException(f"the replay lost step with the file: {error}") from None
    except OSError as error:
        raise click.ClickException(f"cannot read {error.filename}: {error.strerror}") from None
    finally:
        if sink_file is not None:
            sink_file.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.format_text())
