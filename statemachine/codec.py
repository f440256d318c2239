"""The one codec for commands and events: msgpack for journal bodies, JSON for people.

Journal record bodies are msgpack maps of a command (`encode_command` /
`decode_command`). Scenarios and audit exports are JSON lines (`parse_scenario_line`,
`encode_event_json`). Encoders and decoders are built once and reused: msgspec's
advice, and it keeps allocation off the apply path.

Decoding never raises for bad input. RULES.md wants a malformed line to become a
`rejected` event with reason `malformed`, so bad input decodes to a
`MalformedCommand` that keeps its sequence number in the journal and is rejected by the
exchange like any other command. A journal body that is CRC-valid but does not decode
(written by a buggy or newer writer) takes the same path, so every replica rejects it
identically instead of crashing.

Integers in JSON may be arbitrarily large, msgpack integers may not. An integer
outside [-2**63, 2**64 - 1] (what msgpack can carry) is clamped to the nearest bound when
a scenario line is parsed: every such value is far outside the valid range of prices,
quantities and ids (at most 10**12), so the clamped command is rejected for exactly the
same reason the original would be, and it can still be journaled. Unsigned 64-bit values
(a checkpoint's digest) pass unchanged.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import msgspec

from statemachine.commands import Checkpoint, Command, MalformedCommand
from statemachine.events import Event

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

# A scenario line longer than this is refused as malformed rather than parsed: a
# limit on everything, and no legitimate command comes near it.
SCENARIO_LINE_BYTES_MAX = 64 * 1024

_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_command_decoder = msgspec.msgpack.Decoder(Command)
_json_encoder = msgspec.json.Encoder()
_json_command_decoder = msgspec.json.Decoder(Command)
_json_event_decoder = msgspec.json.Decoder(Event)
_msgpack_event_decoder = msgspec.msgpack.Decoder(Event)


class _ScenarioExtras(msgspec.Struct, gc=False):
    """The scenario-only fields of a line: the optional record timestamp."""

    ts: Optional[int] = None


class _IdentityFields(msgspec.Struct, gc=False):
    """What a malformed line may still tell us about who sent it."""

    member: Any = None
    client_order_id: Any = None


_json_extras_decoder = msgspec.json.Decoder(_ScenarioExtras)
_json_identity_decoder = msgspec.json.Decoder(_IdentityFields)


def encode_command(command: Command) -> bytes:
    """The journal body of a command (msgpack map, defaults omitted)."""
    return _msgpack_encoder.encode(command)


def decode_command(body: bytes) -> Command:
    """The command in a journal body; a body that does not decode is a MalformedCommand."""
    try:
        return _msgpack_command_decoder.decode(body)
    except msgspec.MsgspecError as error:
        return MalformedCommand(detail=f"journal body does not decode: {error}")


def decode_commands(bodies: list) -> list:
    """The commands in many journal bodies, in order (what `decode_command` gives for each).

    The replay loops' batch decoder: one `map` of msgspec's own decode over the batch, so
    the common batch (every body decodes) costs no Python frame per record; a batch with
    a body that does not decode is decoded again one body at a time.
    """
    try:
        return list(map(_msgpack_command_decoder.decode, bodies))
    except msgspec.MsgspecError:
        return list(map(decode_command, bodies))


def command_to_json(command: Command) -> bytes:
    """A command as one JSON object (no newline), in the scenario format."""
    return _json_encoder.encode(command)


def command_to_builtins(command: Command) -> dict:
    return msgspec.to_builtins(command)


def encode_event_json(event: Event) -> bytes:
    """An event as one JSON object (no newline), in the scenario event format."""
    return _json_encoder.encode(event)


def encode_events_jsonl(events: Iterable[Event]) -> bytes:
    """Events as JSON lines, each terminated by a newline."""
    encode = _json_encoder.encode
    return b"".join([encode(event) + b"\n" for event in events])


def decode_event_json(line: bytes) -> Event:
    return _json_event_decoder.decode(line)


def encode_event_msgpack(event: Event) -> bytes:
    return _msgpack_encoder.encode(event)


def decode_event_msgpack(data: bytes) -> Event:
    return _msgpack_event_decoder.decode(data)


def _clamp_integers(command: Command) -> Command:
    changes = {}
    for name in command.__struct_fields__:
        value = getattr(command, name)
        if type(value) is int and not INT64_MIN <= value <= UINT64_MAX:
            changes[name] = UINT64_MAX if value > 0 else INT64_MIN
    if not changes:
        return command
    return msgspec.structs.replace(command, **changes)


def _malformed(line: bytes, line_number: Optional[int], reason: str) -> MalformedCommand:
    where = f"line {line_number}: " if line_number is not None else ""
    member = None
    client_order_id = None
    try:
        identity = _json_identity_decoder.decode(line)
    except msgspec.MsgspecError:
        identity = None
    if identity is not None:
        # Only strings are reported back: a member field of the wrong type is part of
        # what made the line malformed and would only confuse the reader.
        if type(identity.member) is str:
            member = identity.member
        if type(identity.client_order_id) is str:
            client_order_id = identity.client_order_id
    return MalformedCommand(
        detail=where + reason, member=member, client_order_id=client_order_id
    )


# Record types the node writes for itself. A scenario written by a person must not be
# able to inject them; `journal import` accepts them so that an export imports again.
INTERNAL_COMMAND_TYPES = (Checkpoint, MalformedCommand)


def parse_scenario_line(
    line: bytes | str, line_number: Optional[int] = None, *, internal_allowed: bool = False
) -> tuple[Command, Optional[int]]:
    """One scenario line -> (command, timestamp_ns or None). Never raises.

    A blank line, non-JSON, a non-object, an unknown ``type`` (the internal record
    types included, unless `internal_allowed`), a missing required field, a value of the
    wrong type or an enum value not listed all give a `MalformedCommand` whose detail
    names the line and what was wrong.
    """
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    line = line.strip()
    if not line:
        return _malformed(line, line_number, "blank line"), None
    if len(line) > SCENARIO_LINE_BYTES_MAX:
        return (
            _malformed(b"", line_number, f"line longer than {SCENARIO_LINE_BYTES_MAX} bytes"),
            None,
        )
    try:
        command = _json_command_decoder.decode(line)
        extras = _json_extras_decoder.decode(line)
    except msgspec.MsgspecError as error:
        return _malformed(line, line_number, str(error)), None
    if not internal_allowed and type(command) in INTERNAL_COMMAND_TYPES:
        return _malformed(line, line_number, f"unknown command type {command.__struct_config__.tag!r}"), None
    timestamp_ns = extras.ts
    if timestamp_ns is not None and not 0 <= timestamp_ns <= INT64_MAX:
        return _malformed(line, line_number, "ts must be a non-negative 64-bit integer"), None
    return _clamp_integers(command), timestamp_ns
