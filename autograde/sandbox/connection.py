"""The grader's end of a kernel's ZeroMQ connections: what a kernel can send, and knowing at once when one is lost.

What a kernel sends is capped where the grader receives it: ZeroMQ's ``MAXMSGSIZE`` on every socket of the client
makes ZeroMQ drop a connection as soon as a message part larger than the cap is announced, before it takes the
memory for it. ZeroMQ takes this for a protocol error and never reconnects: everything the kernel sends on that
channel afterwards is lost, an error that fails a test included. The client must not go on as if nothing happened,
so a :class:`ConnectionWatch` reads ZeroMQ's monitor events for every channel, and a :class:`WatchedChannel` stops
waiting for a message, with nbclient's ``DeadKernelError``, as soon as any connection is gone (a kernel that dies
drops them all, too).
"""
from __future__ import annotations

import time
from queue import Empty
from typing import Callable

import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from nbclient.exceptions import DeadKernelError
from zmq.utils.monitor import parse_monitor_message


class WatchedSocket(zmq.asyncio.Socket):
    watch: "ConnectionWatch | None" = None  # declared here: pyzmq takes any other attribute for a socket option


class WatchedContext(zmq.asyncio.Context):
    """A context whose sockets can carry the watch of the client that made them."""

    _socket_class = WatchedSocket


class ConnectionWatch:
    """Which of a client's connections to its kernel ZeroMQ reported lost, if any (the first one found)."""

    def __init__(self, on_lost: Callable[[str], None]):
        self.on_lost = on_lost  # called once, with the channel's name, when a loss is first seen
        self.lost: str | None = None
        self.monitors: dict[str, tuple[zmq.asyncio.Socket, zmq.Socket]] = {}  # channel -> (monitor, blocking view)

    def add(self, channel: str, sock: WatchedSocket) -> None:
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.monitors[channel] = (monitor, zmq.Socket.shadow(monitor.underlying))
        sock.watch = self

    def check(self) -> str | None:
        """The channel whose connection was lost; reads what the monitors reported since the last check."""
        for channel, (monitor, view) in self.monitors.items():
            while self.lost is None and not monitor.closed and view.poll(0):
                if parse_monitor_message(view.recv_multipart())["event"] == zmq.EVENT_DISCONNECTED:
                    self.lost = channel
                    self.on_lost(channel)
        return self.lost


class WatchedChannel(AsyncZMQSocketChannel):
    """A channel whose wait for a message ends, with ``DeadKernelError``, once any connection to the kernel is lost
    (the monitors wake it up: nbclient may be waiting here for a message that will never come)."""

    socket: WatchedSocket

    async def get_msg(self, timeout: float | None = None) -> dict:
        watch = self.socket.watch
        poller = zmq.asyncio.Poller()
        for sock in [self.socket] + [monitor for monitor, _ in watch.monitors.values()]:
            poller.register(sock, zmq.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            ready = dict(await poller.poll(left))
            if watch.check():
                raise DeadKernelError(f"the grader lost its connection to the kernel ({watch.lost} channel)")
            if self.socket in ready:
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty
