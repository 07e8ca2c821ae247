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
import hpack

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
                    self.responses[ev.stream_id]["body"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.responses[ev.stream_id]["done"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    self.resets[ev.stream_id] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = ev.error_code
            self.flush()
        return True

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
