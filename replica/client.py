"""The Python client library members and the tools use to trade on a twinbook node.

    client = OrderClient([("127.0.0.1", 7701)], "M1", "demo-M1")
    await client.connect()
    report = await client.place("o-1", "AAPL", "buy", "limit", 100, price=19000)
    # report: the first event answering the request (accepted / rejected / ...), or a
    # RequestRejected from the gateway (throttled, malformed, busy)

The client sends a Heartbeat every `heartbeat_interval_ms` (the interval its Logon
negotiates) and answers a ServerTestRequest at once, so the gateway never cuts an idle
but healthy session (`idle_timeout` after four silent intervals). `mass_cancel()` awaits
the gateway's MassCancelCompleted (the count cancelled, possibly 0).

Every ExecutionReport also lands in `client.reports` (an asyncio.Queue of events), fills of
resting orders and other unsolicited reports included, and `on_report` is called for each.

Failover: when the connection drops, the client tries the endpoints in turn (bounded
attempts with backoff), logs on again and resubmits every request still waiting for its
answer, with the same client order ids (the rules are replica/client_core.py's
`ClientCore`, which the simulator's clients drive too). The engine's dedupe makes that safe: a place that
had reached the journal before the failure comes back `rejected` with reason
`duplicate_client_order_id` and the original `order_id` (`was_accepted_before(report)`
says so), never as a second order. A resubmitted cancel of an order already cancelled is
`unknown_order`; a resubmitted replace to the same quantity and price keeps priority.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Callable, Optional

import msgspec

from replica.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    Disconnect,
    ExecutionReport,
    FrameReader,
    Logon,
    LogonAccepted,
    LogonRejected,
    Logout,
    MassCancelRequest,
    OrderStatus,
    OrderStatusRequest,
    PlaceRequest,
    ReplaceRequest,
    RequestRejected,
    Heartbeat,
    MassCancelCompleted,
    ServerHeartbeat,
    ServerTestRequest,
    encode_frame,
    encode_frames,
    server_message_decoder,
)
from replica.client_core import ClientCore, was_accepted_before
from replica.errors import ReplicaError

CONNECT_ATTEMPTS_MAX = 40
RECONNECT_BACKOFF_SECONDS = (0.05, 0.1, 0.2, 0.3, 0.5)


class ClientError(ReplicaError):
    """The client could not reach any endpoint, or a logon was refused."""


__all__ = ["ClientError", "OrderClient", "was_accepted_before"]


class OrderClient:
    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        member: str,
        token: str,
        *,
        on_report: Optional[Callable[[object], None]] = None,
        heartbeat_interval_ms: int = 1000,
        ssl_context=None,
    ) -> None:
        """`ssl_context`: TLS to the gateway (replica.tls.member_client_context) when the
        node runs [tls] members = true; the token then never crosses the network in clear."""
        if not endpoints:
            raise ClientError("at least one endpoint is needed")
        self.endpoints = list(endpoints)
        self.member = member
        self.token = token
        self.on_report = on_report
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ssl_context = ssl_context
        self.reports: asyncio.Queue = asyncio.Queue()
        self.logon: Optional[LogonAccepted] = None
        self.reconnects = 0
        # Which requests wait for answers, what to resubmit: the sans-I/O core's. The
        # futures the callers await are this adapter's, by request id.
        self.core = ClientCore()
        self._futures: dict[int, asyncio.Future] = {}
        self._endpoint_index = 0
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._receiver: Optional[asyncio.Task] = None
        self._heartbeater: Optional[asyncio.Task] = None
        self._closed = False
        self._connected = asyncio.Event()
        self.last_session_sequence = 0
        self._batch: Optional[list] = None  # frames held back inside `batched()`

    # ------------------------------------------------------------ connection

    async def connect(self) -> LogonAccepted:
        for attempt in range(CONNECT_ATTEMPTS_MAX):
            host, port = self.endpoints[self._endpoint_index % len(self.endpoints)]
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    host, port, **({"ssl": self.ssl_context, "server_hostname": ""} if self.ssl_context else {}),
                ), 2.0)
            except (OSError, asyncio.TimeoutError):
                self._endpoint_index += 1
                await self._pause_before(attempt)
                continue
            writer.write(encode_frame(Logon(PROTOCOL_VERSION, self.member, self.token, self.heartbeat_interval_ms)))
            frames = FrameReader()
            answer = None
            try:
                while answer is None:
                    data = await asyncio.wait_for(reader.read(65536), 5.0)
                    if not data:
                        break
                    for payload in frames.feed(data):
                        answer = server_message_decoder.decode(payload)
                        break
            except (OSError, asyncio.TimeoutError, msgspec.MsgspecError):
                answer = None
            if isinstance(answer, LogonRejected):
                writer.close()
                raise ClientError(f"logon of {self.member} refused by {host}:{port}: {answer.reason}")
            if not isinstance(answer, LogonAccepted):
                writer.close()
                self._endpoint_index += 1
                await self._pause_before(attempt)
                continue
            self.logon = answer
            self.last_session_sequence = 0
            self._reader, self._writer = reader, writer
            self._receiver = asyncio.get_running_loop().create_task(self._receive(frames))
            if self._heartbeater is None or self._heartbeater.done():
                self._heartbeater = asyncio.get_running_loop().create_task(self._heartbeats())
            self._connected.set()
            # Resubmit whatever had not been answered, in the order it was sent.
            for request in self.core.resubmissions():
                writer.write(encode_frame(request))
            return answer
        raise ClientError(f"no endpoint of {self.endpoints} accepted a logon after {CONNECT_ATTEMPTS_MAX} attempts")

    async def _pause_before(self, attempt: int) -> None:
        """Back off only after every endpoint was tried once in this round: a failover
        target that is already up is reached at once, not after a growing pause."""
        if self._endpoint_index % len(self.endpoints):
            await asyncio.sleep(0.01)
            return
        rounds = attempt // len(self.endpoints)
        await asyncio.sleep(RECONNECT_BACKOFF_SECONDS[min(rounds, len(RECONNECT_BACKOFF_SECONDS) - 1)])

    async def _heartbeats(self) -> None:
        """A Heartbeat every negotiated interval, so an idle session is not cut."""
        while not self._closed:
            await asyncio.sleep(self.heartbeat_interval_ms / 1000)
            if self._connected.is_set() and self._writer is not None:
                self._writer.write(encode_frame(Heartbeat()))

    async def _receive(self, frames: FrameReader) -> None:
        reader = self._reader
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    break
                for payload in frames.feed(data):
                    self._dispatch(server_message_decoder.decode(payload))
        except (OSError, msgspec.MsgspecError, ValueError):
            pass
        self._connected.clear()
        if not self._closed:
            self.reconnects += 1
            try:
                await self.connect()
            except ClientError as error:
                for request_id in self.core.abandon():
                    future = self._futures.pop(request_id, None)
                    if future is not None and not future.done():
                        future.set_exception(error)

    def _dispatch(self, message) -> None:
        kind = type(message)
        if kind is ExecutionReport:
            self.last_session_sequence = message.session_sequence
            event = message.event
            self.reports.put_nowait(event)
            if self.on_report is not None:
                self.on_report(event)
            if message.request_id:
                self._resolve(self.core.answer(message))
        elif kind is RequestRejected or kind is OrderStatus or kind is MassCancelCompleted:
            self.last_session_sequence = message.session_sequence
            self._resolve(self.core.answer(message))
        elif kind is ServerHeartbeat:
            self.last_session_sequence = message.session_sequence
        elif kind is ServerTestRequest:
            self.last_session_sequence = message.session_sequence
            if self._writer is not None:
                self._writer.write(encode_frame(Heartbeat()))
        elif kind is Disconnect:
            self.last_session_sequence = message.session_sequence or self.last_session_sequence

    def _resolve(self, answered: Optional[tuple[int, object]]) -> None:
        if answered is None:
            return
        request_id, answer = answered
        future = self._futures.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(answer)

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            try:
                self._writer.write(encode_frame(Logout()))
                await self._writer.drain()
            except (OSError, RuntimeError):
                pass
            self._writer.close()
        for task in (self._receiver, self._heartbeater):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    # ------------------------------------------------------------ requests

    def _request(self, request) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.core.submit(request)
        self._futures[request.request_id] = future
        if self._batch is not None:
            self._batch.append(request)
        elif self._connected.is_set() and self._writer is not None:
            self._writer.write(encode_frame(request))
        return future

    @contextlib.contextmanager
    def batched(self):
        """Requests sent inside the block go out together in one write at its end
        (one system call instead of one per request; a pipelining sender's big cost)."""
        if self._batch is not None:
            yield
            return
        self._batch = []
        try:
            yield
        finally:
            batch, self._batch = self._batch, None
            if batch and self._connected.is_set() and self._writer is not None:
                self._writer.write(encode_frames(batch))

    def send_place(self, client_order_id: str, symbol: str, side: str, order_type: str, qty: int, **fields) -> asyncio.Future:
        """Send a place without waiting; the future resolves with its first report."""
        return self._request(PlaceRequest(self.core.next_request_id(), client_order_id, symbol, side, order_type, qty,
                                          **fields))

    async def place(self, client_order_id: str, symbol: str, side: str, order_type: str, qty: int, **fields):
        return await self.send_place(client_order_id, symbol, side, order_type, qty, **fields)

    def send_cancel(self, order_id: Optional[int] = None, client_order_id: Optional[str] = None) -> asyncio.Future:
        """Send a cancel without waiting; the future resolves with its first report."""
        return self._request(CancelRequest(self.core.next_request_id(), order_id, client_order_id))

    async def cancel(self, order_id: Optional[int] = None, client_order_id: Optional[str] = None):
        return await self.send_cancel(order_id, client_order_id)

    async def replace(self, order_id: int, qty: int, price: Optional[int] = None):
        return await self._request(ReplaceRequest(self.core.next_request_id(), order_id, qty, price))

    async def order_status(self, order_id: int) -> OrderStatus:
        return await self._request(OrderStatusRequest(self.core.next_request_id(), order_id))

    async def mass_cancel(self, symbol: Optional[str] = None):
        """Cancel all of this member's orders (in `symbol`); the answer is a
        MassCancelCompleted with the count cancelled (possibly 0), after the cancels'
        own reports."""
        return await self._request(MassCancelRequest(self.core.next_request_id(), symbol))

    async def drain(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    @property
    def unanswered(self) -> int:
        return self.core.unanswered

    def forget_waiting(self) -> None:
        """Cancel every future still waiting and forget its request (a caller giving up,
        e.g. a test whose node it killed for good)."""
        for request_id in self.core.abandon():
            future = self._futures.pop(request_id, None)
            if future is not None:
                future.cancel()
