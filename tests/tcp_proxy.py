"""A TCP proxy the tests can cut and restore, to take a real database "down", or
pause and resume, to make it hang."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(
        self, target_host: str, target_port: int, *, source_host: str | None = None
    ) -> None:
        self._target = (target_host, target_port)
        # Connect upstream from this address (e.g. 127.0.0.2: another caller).
        self._source = (source_host, 0) if source_host else None
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        # Cleared while paused: bytes are read but held, in both directions.
        self._flowing = threading.Event()
        self._flowing.set()
        self.port = 0

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(
                    self._target, timeout=5, source_address=self._source
                )
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Stop listening and kill every open connection: the database is 'down'."""
        if self._listener is not None:
            # close() alone does not wake a thread blocked in accept(), which would
            # go on accepting; shutdown() does (Linux: accept fails with EINVAL).
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()
        # Pipes held by a pause now find their sockets closed, and end.
        self._flowing.set()

    def restore(self) -> None:
        self.start()

    def pause(self) -> None:
        """Forward nothing, but keep every connection open and accept new ones:
        the database 'hangs' (paused, or behind a silent network) without anything
        on the wire saying so. What is sent meanwhile is delivered on resume."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()
