"""The admin endpoint's line protocol (replica/admin.py), on a loopback server."""

from __future__ import annotations

import asyncio
import json

from replica.admin import serve_admin_connection


def test_bad_admin_lines_get_an_error_and_the_connection_stays_open():
    async def scenario():
        async def answer(request: dict) -> dict:
            return {"echo": request.get("command")}

        server = await asyncio.start_server(
            lambda reader, writer: serve_admin_connection(reader, writer, answer), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        for line in (b"not json\n", b"[1, 2]\n", b'{"command": "status"}\n'):
            writer.write(line)
            replies.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
        writer.close()
        server.close()
        await server.wait_closed()
        return replies

    replies = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert "one JSON object per line" in replies[0]["error"]
    assert "one JSON object per line" in replies[1]["error"]
    assert replies[2] == {"echo": "status"}
