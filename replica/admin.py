"""The admin endpoint's wire handling, shared by the primary and the standby.

One JSON object per line in each direction: the client sends `{"command": ...}` (plus
arguments), the node answers one JSON object. What a command does is the node's business
(`answer(request) -> reply`); this module only reads, parses and writes, so both roles
speak the same protocol. A line that is not a JSON object is answered with an error and
the connection stays open.

Who may ask what: with TLS on, the connection arrives with the peer's verified identity
and each request is checked against replica/tls.py's ADMIN_PERMISSIONS before the node
sees it; a refused request is answered `{"error": ..., "refused": "not_permitted"}` (a
stable code) and logged (rate-limited), and the connection stays open.
"""

from __future__ import annotations

import asyncio
import json
from typing import Awaitable, Callable, Optional

from replica.tls import ADMIN_ROLES, PeerIdentity, RefusalLog, admin_refusal

# A request line longer than this is refused: asyncio's readline limit would raise.
ADMIN_LINE_BYTES_MAX = 64 * 1024


async def serve_admin_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Callable[[dict], Awaitable[dict]],
    identity: Optional[PeerIdentity] = None,
    refusals: Optional[RefusalLog] = None,
) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                request = json.loads(line)
            except ValueError:
                request = None
            refusal = admin_refusal(identity, request) if isinstance(request, dict) else None
            if refusal is not None:
                if refusals is not None:
                    refusals.refused(peer, f"admin request {request.get('command')!r} from", f"{identity}: {refusal}")
                reply = {"error": f"refused: {refusal}", "refused": "not_permitted"}
            elif isinstance(request, dict):
                reply = await answer(request)
            else:
                reply = {"error": "an admin request is one JSON object per line, e.g. {\"command\": \"status\"}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return
    finally:
        writer.close()


async def serve_admin(tls, answer: Callable[[dict], Awaitable[dict]], host: str, port: int):
    """A node's admin port (primary or standby alike): `tls` (replica.tls.NodeTls) serves
    it, with mutual TLS when configured, and each connection is served as above with the
    node's `answer`."""
    return await tls.serve(
        lambda reader, writer, identity: serve_admin_connection(reader, writer, answer, identity, tls.refusals),
        host, port, roles=ADMIN_ROLES, where="admin connection from",
    )
