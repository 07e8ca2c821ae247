#!/usr/bin/python3
"""Holds N idle TLS keep-alive connections to 127.0.0.1:PORT, from a
process of its own (its descriptors and memory are not the caller's):

    tls_idle_client.py PORT N [h1|h2|h2r]

h1: each connection makes one HTTP/1.1 request, reads the answer's head
and stays open; h2: each sends the HTTP/2 preface and SETTINGS and stays
open; h2r: each makes 8 HTTP/2 requests at once with a browser's fields
(python3-h2), reads the answers and stays open. Prints "ready N" once all are open, then holds them until its stdin
closes. Certificates are not checked: the figures, not the trust, are the
point (tests/test_proxy_tls.py checks trust)."""
import resource
import socket
import ssl
import sys

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_REQUESTS = 8
BROWSER_FIELDS = [
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.9"), ("accept-encoding", "gzip, deflate, br"),
    ("cookie", "csrftoken=" + "a" * 64 + "; sessionid=" + "b" * 32)]


def h2_requests(s):
    import h2.config
    import h2.connection
    import h2.events
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    for i in range(H2_REQUESTS):
        c.send_headers(1 + 2 * i, [(":method", "GET"), (":path", f"/?{i}"), (":scheme", "https"),
                                   (":authority", "localhost"), *BROWSER_FIELDS], end_stream=True)
    s.sendall(c.data_to_send())
    done = 0
    while done < H2_REQUESTS:
        got = s.recv(65536)
        if not got:
            raise SystemExit("the server closed a connection")
        for ev in c.receive_data(got):
            if isinstance(ev, h2.events.StreamEnded):
                done += 1
        s.sendall(c.data_to_send())



def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    proto = sys.argv[3] if len(sys.argv) > 3 else "h1"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"] if proto.startswith("h2") else ["http/1.1"])
    socks = []
    for _ in range(n):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")
        if proto == "h2r":
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
            h2_requests(s)
        elif proto == "h2":
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
            s.sendall(H2_PREFACE)
            s.recv(4096)            # the server's SETTINGS
        else:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                got = s.recv(4096)
                if not got:
                    raise SystemExit("the server closed a connection")
                head += got
        socks.append(s)
    print("ready", len(socks), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
