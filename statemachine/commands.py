"""Commands: what a journal record asks the state machine to do.

Commands are imperative (`PlaceOrder`, `CancelOrder`), frozen msgspec Structs in one
tagged union keyed by the field ``type``. The tag values are the scenario-format
names of RULES.md (``place``, ``cancel``, ...), so the same classes decode a
hand-written JSON-lines scenario and the msgpack body of a journal record.

Optional fields use ``None`` for "absent": RULES.md says ``null`` for an optional
field means absent, so a decoder that sees ``null`` and a decoder that sees nothing
must build the same command. Defaults (``tif`` = gtc, ``stp`` = cancel_newest, ...)
are applied by the exchange, not here, so the encoded command stays exactly what
the member sent.

The structs are ``gc=False``: they hold only strings, integers and booleans, never
containers, so they cannot be part of a reference cycle, and keeping them out of the
garbage collector's tracked set matters because the exchange keeps a reference to
every resting order's command.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "stop", "stop_limit"]
TimeInForce = Literal["gtc", "ioc", "fok", "day"]
SelfTradePrevention = Literal["none", "cancel_newest", "cancel_oldest", "cancel_both", "decrement"]


class _Command(
    msgspec.Struct,
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="type",
    forbid_unknown_fields=False,
):
    """Base of every command; carries the tagged-union configuration."""


class AddInstrument(_Command, tag="add_instrument"):
    symbol: str
    tick_size: Optional[int] = None
    lot_size: Optional[int] = None
    band_bps: Optional[int] = None
    reference_price: Optional[int] = None


class PlaceOrder(_Command, tag="place"):
    member: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: int
    price: Optional[int] = None
    tif: Optional[TimeInForce] = None
    post_only: Optional[bool] = None
    display_qty: Optional[int] = None
    stop_price: Optional[int] = None
    stp: Optional[SelfTradePrevention] = None


class CancelOrder(_Command, tag="cancel"):
    member: str
    order_id: Optional[int] = None
    client_order_id: Optional[str] = None


class ReplaceOrder(_Command, tag="replace"):
    member: str
    order_id: int
    qty: int
    price: Optional[int] = None
    # Carried only so that it can be refused: RULES.md makes a replace that names a
    # display quantity `invalid_replace`.
    display_qty: Optional[int] = None
    client_order_id: Optional[str] = None


class MassCancel(_Command, tag="mass_cancel"):
    member: str
    symbol: Optional[str] = None


class HaltInstrument(_Command, tag="halt"):
    symbol: str


class ResumeInstrument(_Command, tag="resume"):
    symbol: str


class EndOfDay(_Command, tag="end_of_day"):
    pass


class MalformedCommand(_Command, tag="malformed"):
    """A command that could not be decoded, journaled as such.

    The gateway and the scenario importer turn undecodable input into this command
    instead of dropping it, so the bad input keeps its sequence number and a replay
    reproduces the `rejected` event with reason `malformed` exactly.
    """

    detail: str
    member: Optional[str] = None
    client_order_id: Optional[str] = None


class Checkpoint(_Command, tag="checkpoint"):
    """A record the node runtime writes for itself (epoch start, digest checkpoint,
    rules version).

    The state machine applies it as a no-op that emits nothing; it exists so the
    runtime can write records that are not trading commands into the one journal
    without the state machine refusing them.
    """

    kind: str
    epoch: Optional[int] = None
    digest: Optional[int] = None
    # kind "rules": the matching-rules version (statemachine/version.py) the records
    # after this one were written under.
    version: Optional[int] = None


Command = Union[
    AddInstrument,
    PlaceOrder,
    CancelOrder,
    ReplaceOrder,
    MassCancel,
    HaltInstrument,
    ResumeInstrument,
    EndOfDay,
    MalformedCommand,
    Checkpoint,
]

COMMAND_TYPES = (
    AddInstrument,
    PlaceOrder,
    CancelOrder,
    ReplaceOrder,
    MassCancel,
    HaltInstrument,
    ResumeInstrument,
    EndOfDay,
    MalformedCommand,
    Checkpoint,
)
