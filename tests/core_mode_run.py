"""Run a command stream through whichever core this process imported; print fingerprints.

`python core_mode_run.py COMMANDS_FILE` (a msgpack array of journal bodies) applies every
command to a fresh exchange and prints one JSON object: the core mode, blake2b of the
msgpack encoding of every event in order, blake2b of every 97th state digest, the final
state digest and the canonical digest of the final state. tests/test_core_modes.py runs
it once per core (TWINBOOK_PURE_PYTHON unset / =1) and compares the outputs.
"""

from __future__ import annotations

import hashlib
import json
import sys

import msgspec

import statemachine
from statemachine import Exchange, canonical_digest
from statemachine.codec import decode_commands, encode_event_msgpack


def fingerprints(stream: list, book_updates: bool) -> dict:
    exchange = Exchange(book_updates=book_updates)
    events_hash = hashlib.blake2b(digest_size=16)
    digests_hash = hashlib.blake2b(digest_size=16)
    for sequence, command in enumerate(stream, 1):
        for event in exchange.apply(sequence, sequence, command):
            events_hash.update(encode_event_msgpack(event))
        if sequence % 97 == 0:
            digests_hash.update(exchange.state_digest().to_bytes(8, "little"))
    return {
        "events": events_hash.hexdigest(),
        "digests": digests_hash.hexdigest(),
        "final_digest": exchange.state_digest(),
        "canonical_digest": canonical_digest(exchange).hex(),
    }


def main(path: str) -> None:
    with open(path, "rb") as file:
        stream = decode_commands(msgspec.msgpack.decode(file.read()))
    result = {"mode": statemachine.CORE_MODE, "commands": len(stream)}
    for book_updates in (False, True):
        result[f"book_updates={book_updates}"] = fingerprints(stream, book_updates)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
