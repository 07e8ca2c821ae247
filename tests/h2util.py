"""HTTP/2 on raw sockets for the tests: a python3-h2 client for well-formed
exchanges, and frame writers (hpack encodes) for the malformed and hostile
shapes no library sends."""
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from websockets.client import ClientConnection
from websockets.connection import OPEN
from websockets.frames import Opcode
from websockets.uri import parse_uri

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream) + payload


def request_headers(path, method="GET", authority="localhost", extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority), *extra]


class Client:
    """A python3-h2 client on a plain (h2c) or given socket."""

    def __init__(self, port, sock=None, settings=None):
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.responses = {}
        self.resets = {}
        self.goaway = None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, path, method="GET", body=None, headers=(), trailers=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, request_headers(path, method, extra=headers),
                               end_stream=body is None and trailers is None and end)
        self.responses[sid] = {"headers": None, "body": b"", "done": False}
        if body is not None:
            i = 0
            while i < len(body):
                window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if window <= 0:         # read the peer's WINDOW_UPDATE (or its answer)
                    self.flush()
                    self.pump(lambda: self.conn.local_flow_control_window(sid) > 0 or sid in self.resets
                              or self.responses[sid]["done"] or self.goaway is not None)
                    if sid in self.resets or self.responses[sid]["done"] or self.goaway is not None:
                        return sid
                    continue
                self.conn.send_data(sid, body[i:i + window])
                i += window
                self.flush()
            if trailers is None and end:
                self.conn.end_stream(sid)
        if trailers is not None:
            self.conn.send_headers(sid, trailers, end_stream=True)
        self.flush()
        return sid

    def pump(self, until, timeout=20):
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("HTTP/2 exchange timed out")
            data = self.sock.recv(65536)
            if not data:
                return False
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.responses[ev.stream_id]["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.received(ev)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.responses[ev.stream_id]["done"] = True
                    self.ended(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.resets[ev.stream_id] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = ev.error_code
            self.flush()
        return True

    def received(self, ev):
        self.responses[ev.stream_id]["body"] += ev.data
        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)

    def ended(self, sid):
        pass

    def get(self, path, **kw):
        sid = self.send(path, **kw)
        self.pump(lambda: self.responses[sid]["done"] or sid in self.resets or self.goaway is not None)
        r = self.responses[sid]
        return int(r["headers"][":status"]) if r["headers"] else None, r["headers"], r["body"]

    def close(self):
        self.sock.close()


def drain_until_closed(sock, timeout=20):
    """Reads until the peer closes; returns (bytes read, GOAWAY error code or None)."""
    sock.settimeout(timeout)
    got, buf, goaway = 0, b"", None
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            got += len(data)
            buf = (buf + data)[-65536:]
    except (ConnectionResetError, socket.timeout):
        pass
    i = buf.find(b"\x07\x00\x00\x00\x00\x00")     # GOAWAY, no flags, stream 0
    if i >= 3 and i + 14 <= len(buf):
        goaway = struct.unpack(">I", buf[i + 10:i + 14])[0]
    return got, goaway


class Victim:
    """Another client's HTTP/1.1 requests on their own connections while an
    attack runs: their latencies and failures."""

    def __init__(self, port, path="/static/small.txt"):
        self.port, self.path = port, path
        self.latencies, self.failures = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                assert data.startswith(b"HTTP/1.1 200"), data[:100]
                self.latencies.append(time.monotonic() - t0)
            except Exception as e:      # noqa: BLE001 - every failure counts
                self.failures.append(repr(e))
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.thread.join(20)
        return self


def encoder():
    return hpack.Encoder()


class WebSocketClosed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code, self.reason = code, reason


class WebSocketClient(Client):
    """RFC 8441 with python3-h2: each WebSocket an extended CONNECT stream
    (beside ordinary requests on the same connection), its frames made and
    read by python3-websockets' own protocol object (sans I/O), which also
    answers pings and closes. ACK=False leaves the WebSockets' DATA
    unacknowledged (a client whose window stays shut) until ack_all()."""

    def __init__(self, port, sock=None, ack=True, config=None, window=None):
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(config or h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if window:      # what the proxy may send before it must wait, per stream and in all
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            self.conn.increment_flow_control_window(window - 65535)
        self.responses, self.resets, self.goaway = {}, {}, None
        self.ws, self.frames, self.pending, self.unacked, self.eof = {}, {}, {}, {}, set()
        self.ack = ack
        self.flush()
        self.pump(lambda: self.conn.remote_settings.enable_connect_protocol == 1)

    def open(self, path, headers=(), authority="localhost", scheme="http", framed=True):
        """Sends the extended CONNECT; returns (stream id, :status or None when reset, headers).
        FRAMED=False: the stream's bytes are raw() ones and go to responses[sid]["body"]."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", scheme),
                                     (":path", path), (":authority", authority),
                                     *([] if any(k == "sec-websocket-version" for k, _ in headers)
                                       else [("sec-websocket-version", "13")]), *headers])
        self.responses[sid] = {"headers": None, "body": b"", "done": False}
        self.flush()
        self.pump(lambda: self.responses[sid]["headers"] is not None or sid in self.resets or self.goaway is not None)
        head = self.responses[sid]["headers"]
        status = int(head[":status"]) if head else None
        if status == 200 and framed:
            self.ws[sid] = ClientConnection(parse_uri(f"ws://{authority}{path}"), state=OPEN, max_size=None)
            self.frames[sid], self.pending[sid], self.unacked[sid] = [], bytearray(), 0
        return sid, status, head

    def raw(self, sid, data, end=False):
        """Bytes on the stream as they are (no WebSocket framing)."""
        self.pending.setdefault(sid, bytearray()).extend(data)
        if end:
            self.eof.add(sid)
        self.flush()
        self.pump(lambda: not self.pending.get(sid) or sid in self.resets or self.goaway is not None)

    def send_ws(self, sid, msg):
        ws = self.ws[sid]
        ws.send_text(msg.encode()) if isinstance(msg, str) else ws.send_binary(msg)
        self._queue(sid)
        self.flush()
        self.pump(lambda: not self.pending[sid] or sid in self.resets or self.goaway is not None)

    def close_ws(self, sid, code=1000, reason=""):
        self.ws[sid].send_close(code, reason)
        self._queue(sid)
        self.flush()

    def recv_ws(self, sid, timeout=20):
        """The next message (str or bytes); WebSocketClosed at a close frame."""
        parts = []

        def complete():
            while self.frames[sid]:
                f = self.frames[sid].pop(0)
                if f.opcode is Opcode.CLOSE:
                    raise WebSocketClosed(self.ws[sid].close_rcvd.code, self.ws[sid].close_rcvd.reason)
                if f.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    parts.append(f)
                    if f.fin:
                        return True
            if sid in self.resets or self.responses[sid]["done"]:
                raise WebSocketClosed(None, "stream ended")
            return False
        self.pump(complete, timeout)
        data = b"".join(bytes(f.data) for f in parts)
        return data.decode() if parts[0].opcode is Opcode.TEXT else data

    def ack_all(self):
        self.ack = True
        for sid, n in self.unacked.items():
            if n and sid not in self.resets:
                self.conn.acknowledge_received_data(n, sid)
            self.unacked[sid] = 0
        self.flush()

    def received(self, ev):
        sid = ev.stream_id
        if sid not in self.ws:
            return super().received(ev)
        self.ws[sid].receive_data(ev.data)
        self.frames[sid].extend(self.ws[sid].events_received())
        self._queue(sid)            # pongs, the answer to a close
        if self.ack:
            self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
        else:
            self.unacked[sid] += ev.flow_controlled_length

    def ended(self, sid):
        if sid in self.ws:
            self.ws[sid].receive_eof()
            self._queue(sid)

    def _queue(self, sid):
        for data in self.ws[sid].data_to_send():
            if data:
                self.pending[sid].extend(data)
            else:
                self.eof.add(sid)       # websockets' end of the byte stream: END_STREAM

    def _move(self):
        """What waits for each stream, as far as its window allows."""
        for sid, buf in self.pending.items():
            try:
                while buf and sid not in self.resets:
                    window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                                 len(buf))
                    if window <= 0:
                        break
                    self.conn.send_data(sid, bytes(buf[:window]))
                    del buf[:window]
                if not buf and sid in self.eof:
                    self.eof.discard(sid)
                    self.conn.end_stream(sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                buf.clear()         # reset, or ended already
                self.eof.discard(sid)

    def flush(self):
        if hasattr(self, "pending"):
            self._move()
        super().flush()
