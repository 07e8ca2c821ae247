"""The HTTP/1.1 conformance matrix: requests valid and invalid by RFC 9110
and RFC 9112 (and the choices docs/security.md states where they leave
one), each with the section it comes from. tests/test_http_conformance.py
sends every case to a worker directly and through the proxy; the table in
docs/security.md is printed from here (python3 tests/conformance.py).

A valid case names the environ the app must see when the request reaches
a worker directly: REQUEST_METHOD, PATH_INFO, QUERY_STRING, SERVER_PROTOCOL,
RAW_URI, CONTENT_TYPE, CONTENT_LENGTH and every HTTP_* key (the
X-Forwarded-* ones apart: the forwarding rules own them), and the body.
Through the proxy the app sees the same, changed only as the proxy's
documented forwarding changes it (see via_proxy()). An invalid case names
the statuses allowed; it must never reach the app.
"""
import sys
from dataclasses import dataclass, field

CRLF = b"\r\n"


@dataclass
class Case:
    id: str
    rfc: str                # section the case comes from ("9112 3.2.2", "9110 5.3", "choice")
    what: str               # one line for the table
    data: bytes
    status: frozenset = frozenset()     # invalid: allowed statuses
    env: dict = field(default_factory=dict)     # valid: the app's environ, directly
    body: bytes = b""
    closes: object = False  # the request ends the connection after its answer ("either": it may)
    origin: str = ""        # valid: the target as the proxy forwards it

    @property
    def valid(self):
        return not self.status


def head(line, *fields):
    """A request head: LINE, then FIELDS ("Name: value" strings)."""
    out = line if isinstance(line, bytes) else line.encode("latin-1")
    for f in fields:
        out += CRLF + (f if isinstance(f, bytes) else f.encode("latin-1"))
    return out + CRLF + CRLF


def origin_of(target, method):
    """The target as the proxy forwards it: origin-form, no fragment."""
    t = target.split("#", 1)[0]
    if "://" in t and not t.startswith("/"):
        rest = t.split("://", 1)[1]
        cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
        t = rest[cut:]
        if not t or t.startswith("?"):
            t = ("*" if method == "OPTIONS" and not t else "/") + t
    return t


CASES = []


def ok(id, rfc, what, data, method="GET", target="/", path=None, query="", proto="HTTP/1.1", fields=None,
       body=b"", closes="auto", extra=None):
    """A valid case; FIELDS are the HTTP_* keys (Host "h" unless given)."""
    env = {"REQUEST_METHOD": method, "PATH_INFO": target if path is None else path, "QUERY_STRING": query,
           "SERVER_PROTOCOL": proto, "RAW_URI": target, "SCRIPT_NAME": ""}
    env.update({"HTTP_HOST": "h"} if fields is None else fields)
    env.update(extra or {})
    if closes == "auto":
        closes = proto == "HTTP/1.0"
    CASES.append(Case(id, rfc, what, data, env=env, body=body, closes=closes, origin=origin_of(target, method)))


def bad(id, rfc, what, data, *status):
    CASES.append(Case(id, rfc, what, data, status=frozenset(status or (400,))))


def get(target, *fields, line_version="HTTP/1.1"):
    return head(b"GET " + (target if isinstance(target, bytes) else target.encode("latin-1")) + b" "
                + line_version.encode(), "Host: h", *fields)


def post(*fields, body=b"", line=b"POST /p HTTP/1.1"):
    return head(line, "Host: h", *fields) + body


def chunked(body_wire, *fields):
    return post("Transfer-Encoding: chunked", *fields) + body_wire


TE = {"HTTP_HOST": "h", "HTTP_TRANSFER_ENCODING": "chunked"}

# ---- request line (RFC 9112 3, RFC 9110 9.1, 2.5) ----
ok("get", "9112 3", "GET in origin-form", get("/"))
ok("head", "9110 9.3.2", "HEAD", head("HEAD /x HTTP/1.1", "Host: h"), method="HEAD", target="/x")
ok("post-length", "9112 6.2", "POST with Content-Length", post("Content-Length: 5", body=b"hello"),
   method="POST", target="/p", extra={"CONTENT_LENGTH": "5"}, body=b"hello")
for m in ("PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"):
    ok(f"method-{m.lower()}", "9110 9.3", f"{m}", head(f"{m} /m HTTP/1.1", "Host: h"), method=m, target="/m")
for m, rfc in (("QUERY", "9110 9.1"), ("PROPFIND", "9110 9.1 (RFC 4918)"), ("MKCOL", "9110 9.1 (RFC 4918)"),
               ("VERSION-CONTROL", "9110 9.1 (RFC 3253)"), ("M-SEARCH", "9110 9.1"), ("-BLARGH", "9110 9.1"),
               ("X", "9110 9.1"), ("FOO_BAR", "9110 9.1"), ("A1!#$%&'*+.^_`|~", "9110 9.1")):
    ok(f"method-token-{m.lower()}", rfc, f"extension method {m}: any token without lower case",
       head(f"{m} /t HTTP/1.1", "Host: h"), method=m, target="/t")
ok("http10-no-host", "9112 3.2", "HTTP/1.0 without Host", head("GET /old HTTP/1.0"), target="/old",
   proto="HTTP/1.0", fields={})
ok("http10-keep-alive", "9112 9.3", "HTTP/1.0 with Connection: keep-alive",
   head("GET /ka HTTP/1.0", "Host: h", "Connection: keep-alive"), target="/ka", proto="HTTP/1.0",
   fields={"HTTP_HOST": "h", "HTTP_CONNECTION": "keep-alive"}, closes=False)
ok("http11-no-host", "choice (9112 3.2)", "HTTP/1.1 without Host: served", head("GET /nohost HTTP/1.1"),
   target="/nohost", fields={})
ok("http-1.2", "9110 2.5", "HTTP/1.2 read as 1.1", get("/v", line_version="HTTP/1.2"), target="/v")
ok("http-1.9", "9110 2.5", "HTTP/1.9 read as 1.1", get("/v", line_version="HTTP/1.9"), target="/v")
ok("leading-crlf", "9112 2.2", "an empty line before the request line", CRLF + get("/"))
ok("leading-8-crlf", "9112 2.2", "eight empty lines before the request line", CRLF * 8 + get("/"))
bad("double-sp", "9112 3", "two SP after the method", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n")
bad("leading-sp", "9112 3", "SP before the method", b" GET / HTTP/1.1\r\nHost: h\r\n\r\n")
bad("trailing-sp", "9112 3", "SP after the version", b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n")
bad("htab-separator", "9112 3", "HTAB as separator", b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n")
bad("htab-in-target", "9112 3", "HTAB in the target", b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n")
bad("bare-lf-line", "9112 2.2", "request line ended by LF alone", b"GET / HTTP/1.1\nHost: h\r\n\r\n")
bad("bare-cr-line", "9112 2.2", "CR inside the request line", b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n")
bad("http09", "9112 3", "no version (HTTP/0.9)", b"GET /\r\n\r\n")
bad("version-lower", "9112 2.3", "lower-case http/1.1", b"GET / http/1.1\r\nHost: h\r\n\r\n")
bad("version-10", "9112 2.3", "HTTP/1.10", get("/", line_version="HTTP/1.10"))
bad("version-01", "9112 2.3", "HTTP/01.1", get("/", line_version="HTTP/01.1"))
bad("version-short", "9112 2.3", "HTTP/1", get("/", line_version="HTTP/1"))
bad("version-0.99", "9112 2.3", "HTTP/0.99", get("/", line_version="HTTP/0.99"))
bad("version-https", "9112 2.3", "HTTPS/1.1", get("/", line_version="HTTPS/1.1"))
bad("version-111", "9112 2.3", "HTTP/111", get("/", line_version="HTTP/111"))
bad("version-2.0", "9110 6.2", "HTTP/2.0: major version not supported", get("/", line_version="HTTP/2.0"), 505)
bad("version-0.9", "9110 6.2", "HTTP/0.9", get("/", line_version="HTTP/0.9"), 505)
bad("version-3.0", "9110 6.2", "HTTP/3.0", get("/", line_version="HTTP/3.0"), 505)
bad("h2-preface", "9113 3.4", "the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505)
bad("method-paren", "9110 9.1", "method not a token: G(T", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n")
bad("method-colon", "9110 9.1", "method not a token: GET:", b"GET: / HTTP/1.1\r\nHost: h\r\n\r\n")
bad("method-obs-text", "9110 9.1", "obs-text in the method", b"GET\xdf /g HTTP/1.1\r\nHost: h\r\n\r\n")
bad("method-nul", "9110 9.1", "NUL in the method", b"GET\x00 /g HTTP/1.1\r\nHost: h\r\n\r\n")
bad("method-lower", "choice (9110 9.1)", "lower-case method: 501", b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 501)
bad("method-mixed", "choice (9110 9.1)", "mixed-case method: 501", b"Post / HTTP/1.1\r\nHost: h\r\n\r\n", 501)
bad("method-lower-short", "choice (9110 9.1)", "-bl: a token with lower case", b"-bl /f HTTP/1.1\r\n\r\n", 501)
bad("connect", "9110 9.3.6", "CONNECT: no tunnels here",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501)
bad("nine-crlf", "9112 2.2", "nine empty lines before the request line", CRLF * 9 + get("/"))
bad("request-line-too-long", "9112 3", "request line over 8190 bytes", get("/" + "a" * 9000), 414)
bad("tls-hello", "9112 2.2", "a TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40)

# ---- request targets (RFC 9112 3.2, RFC 3986) ----
ok("query", "9112 3.2.1", "origin-form with a query", get("/a/b?x=1&y=2"), target="/a/b?x=1&y=2", path="/a/b",
   query="x=1&y=2")
ok("empty-query", "9112 3.2.1", "an empty query", get("/a?"), target="/a?", path="/a")
ok("slashes", "9112 3.2.1", "empty segments kept", get("///keeping_slashes"), target="///keeping_slashes")
ok("quotes", "choice (9112 3.2)", "quotes in path and query", get('/with_"quotes"?foo="bar"'),
   target='/with_"quotes"?foo="bar"', path='/with_"quotes"', query='foo="bar"')
ok("brackets", "choice (9112 3.2)", "<>{}|\\^` in the path", get("/a<b>{c}|d\\e^f`g"),
   target="/a<b>{c}|d\\e^f`g")
ok("obs-text-path", "choice (9112 3.2)", "raw UTF-8 in the path (latin-1 in PATH_INFO)",
   get("/\xc3\xa0%20k"), target="/\xc3\xa0%20k", path="/\xc3\xa0 k")
ok("obs-text-query", "choice (9112 3.2)", "raw bytes in the query", get("/q?\xff\xfe=1"), target="/q?\xff\xfe=1",
   path="/q", query="\xff\xfe=1")
ok("pct-space", "3986 2.1", "%20 decoded in PATH_INFO", get("/a%20b"), target="/a%20b", path="/a b")
ok("pct-slash", "3986 2.1", "%2F decoded in PATH_INFO", get("/a%2Fb"), target="/a%2Fb", path="/a/b")
ok("pct-upper-lower", "3986 2.1", "hex digits of either case", get("/%c3%A9"), target="/%c3%A9", path="/\xc3\xa9")
ok("pct-nul", "3986 2.1", "%00 decoded", get("/a%00b"), target="/a%00b", path="/a\x00b")
ok("pct-query-raw", "3986 3.4", "the query is passed as sent, bad escapes too", get("/q?a=%zz&b=100%"),
   target="/q?a=%zz&b=100%", path="/q", query="a=%zz&b=100%")
ok("fragment", "9110 4.2.5", "a fragment is cut off", get("/a#frag"), target="/a#frag", path="/a")
ok("fragment-after-query", "9110 4.2.5", "fragment after a query", get("/a?x=1#f"), target="/a?x=1#f",
   path="/a", query="x=1")
ok("fragment-before-qmark", "9110 4.2.5", "a ? inside the fragment is not a query", get("/a#f?x"),
   target="/a#f?x", path="/a")
ok("absolute", "9112 3.2.2", "absolute-form: authority is the Host", get("http://example.com/foo?q=1"),
   target="http://example.com/foo?q=1", path="/foo", query="q=1", fields={"HTTP_HOST": "example.com"})
ok("absolute-https", "9112 3.2.2", "https absolute-form", get("https://example.com/foo"),
   target="https://example.com/foo", path="/foo", fields={"HTTP_HOST": "example.com"})
ok("absolute-upper-scheme", "3986 3.1", "scheme of any case", get("HTTP://Example.COM:81/x"),
   target="HTTP://Example.COM:81/x", path="/x", fields={"HTTP_HOST": "Example.COM:81"})
ok("absolute-ipv6", "9112 3.2.2", "IPv6 authority", get("http://[::1]:8080/foo"), target="http://[::1]:8080/foo",
   path="/foo", fields={"HTTP_HOST": "[::1]:8080"})
ok("absolute-userinfo", "9112 3.2.2", "userinfo dropped from the Host",
   get("http://user:pass@example.com:8080/foo?q=1"), target="http://user:pass@example.com:8080/foo?q=1",
   path="/foo", query="q=1", fields={"HTTP_HOST": "example.com:8080"})
ok("absolute-no-path", "9110 4.2.3", "no path means /", get("http://example.com"), target="http://example.com",
   path="/", fields={"HTTP_HOST": "example.com"})
ok("absolute-query-only", "9110 4.2.3", "a query without path", get("http://example.com?q"),
   target="http://example.com?q", path="/", query="q", fields={"HTTP_HOST": "example.com"})
ok("absolute-fragment", "9110 4.2.5", "absolute-form with a fragment", get("http://example.com/f#x"),
   target="http://example.com/f#x", path="/f", fields={"HTTP_HOST": "example.com"})
ok("absolute-http10", "9112 3.2.2", "absolute-form in HTTP/1.0 without Host",
   head("GET http://h.example/p HTTP/1.0"), target="http://h.example/p", path="/p", proto="HTTP/1.0",
   fields={"HTTP_HOST": "h.example"})
ok("absolute-pct", "9112 3.2.2", "absolute-form path decoded", get("http://example.com/a%20b"),
   target="http://example.com/a%20b", path="/a b", fields={"HTTP_HOST": "example.com"})
ok("options-asterisk", "9112 3.2.4", "OPTIONS *", head("OPTIONS * HTTP/1.1", "Host: h"), method="OPTIONS",
   target="*")
ok("options-absolute", "9112 3.2.4", "OPTIONS http://h:8001 means *", head("OPTIONS http://h.example:8001 HTTP/1.1"),
   method="OPTIONS", target="http://h.example:8001", path="*", fields={"HTTP_HOST": "h.example:8001"})
ok("options-absolute-query", "9112 3.2.4", "OPTIONS http://h?q means /?q, not *",
   head("OPTIONS http://h.example?q HTTP/1.1"), method="OPTIONS", target="http://h.example?q", path="/", query="q",
   fields={"HTTP_HOST": "h.example"})
bad("asterisk-get", "9112 3.2.4", "* with GET", get("*"))
bad("authority-get", "9112 3.2.3", "authority-form with GET", get("example.com:443"))
bad("relative", "9112 3.2", "a relative reference", get("foo/bar"))
bad("query-only", "9112 3.2", "a bare query", get("?x=1"))
bad("ftp", "9112 3.2.2", "absolute-form with a scheme we do not serve", get("ftp://example.com/x"))
bad("http-empty", "9110 4.2.1", "http:// without host", get("http://"))
bad("http-empty-host", "9110 4.2.1", "http:///x: empty host", get("http:///x"))
bad("http-two-at", "3986 3.2", "two @ in the authority", get("http://a@b@c/"))
bad("http-bad-ipv6", "3986 3.2.2", "unclosed IP literal", get("http://[::1/x"))
bad("http-bad-port", "3986 3.2.3", "a port that is not digits", get("http://h:8x/"))
bad("http-bad-host", "3986 3.2.2", "a host with a quote", get('http://a"b/'))
bad("pct-bad", "3986 2.1", "% not followed by two hex digits", get("/a%zz"))
bad("pct-short", "3986 2.1", "% at the end of the path", get("/100%"))
bad("pct-one-digit", "3986 2.1", "%4 then the end", get("/a%4"))
bad("sp-in-target", "9112 3", "an unencoded SP in the target", b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n")
bad("nul-in-target", "9112 3", "NUL in the target", b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n")
bad("del-in-target", "9112 3", "DEL in the target", b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n")

# ---- fields (RFC 9110 5, RFC 9112 5) ----
ok("field-special-name", "9110 5.1", "tchars in a name", get("/", "X.Custom|Pipe!#$%&'*+^`~: ok"),
   fields={"HTTP_HOST": "h", "HTTP_X.CUSTOM|PIPE!#$%&'*+^`~": "ok"})
ok("field-ows", "9110 5.5", "OWS around a value is not part of it", get("/", "Name: \t value \t"),
   fields={"HTTP_HOST": "h", "HTTP_NAME": "value"})
ok("field-inner-ws", "9110 5.5", "whitespace inside a value stays", get("/", "Name: a  \t b"),
   fields={"HTTP_HOST": "h", "HTTP_NAME": "a  \t b"})
ok("field-empty", "9110 5.5", "an empty value", get("/", "Empty:"), fields={"HTTP_HOST": "h", "HTTP_EMPTY": ""})
ok("field-obs-text", "9110 5.5", "obs-text in a value", get("/", "X-Value: caf\xc3\xa9"),
   fields={"HTTP_HOST": "h", "HTTP_X_VALUE": "caf\xc3\xa9"})
ok("field-case", "9110 5.1", "names are case-insensitive", get("/", "x-mIxEd: 1"),
   fields={"HTTP_HOST": "h", "HTTP_X_MIXED": "1"})
ok("field-list-repeat", "9110 5.3", "a list field on two lines is joined", get("/", "Accept: a", "Accept: b"),
   fields={"HTTP_HOST": "h", "HTTP_ACCEPT": "a,b"})
ok("field-if-match-repeat", "9110 13.1.1", "If-Match twice", get("/", "If-Match: \"x\"", "If-Match: \"y\""),
   fields={"HTTP_HOST": "h", "HTTP_IF_MATCH": '"x","y"'})
ok("field-cookie-repeat", "6265 5.4", "two Cookie lines joined with ;", get("/", "Cookie: a=1", "Cookie: b=2"),
   fields={"HTTP_HOST": "h", "HTTP_COOKIE": "a=1; b=2"})
ok("field-underscore", "choice (3875 4.1.18)", "a name with _ never reaches the environ", get("/", "X_Forwarded_For: 1.2.3.4"))
ok("field-content-type", "9110 8.3", "Content-Type as CONTENT_TYPE", get("/", "Content-Type: text/plain"),
   extra={"CONTENT_TYPE": "text/plain"})
ok("singleton-same", "choice (9110 5.3)", "Content-Type twice, same value: kept once",
   get("/", "Content-Type: a/b", "Content-Type: a/b"), extra={"CONTENT_TYPE": "a/b"})
ok("singleton-same-ua", "choice (9110 5.3)", "User-Agent twice, same value: kept once",
   get("/", "User-Agent: t/1", "User-Agent: t/1"), fields={"HTTP_HOST": "h", "HTTP_USER_AGENT": "t/1"})
ok("fields-100", "9110 5.4", "100 fields, the limit", get("/", *[f"X-F{i}: {i}" for i in range(99)]),
   fields={"HTTP_HOST": "h", **{f"HTTP_X_F{i}": str(i) for i in range(99)}})
ok("field-8000", "9110 5.4", "an 8000-byte value", get("/", "X-Big: " + "v" * 8000),
   fields={"HTTP_HOST": "h", "HTTP_X_BIG": "v" * 8000})
bad("space-before-colon", "9112 5.1", "whitespace between name and colon", get("/", "X-A : 1"))
bad("obs-fold", "9112 5.2", "obs-fold", get("/", "X-A: 1", " 2"))
bad("obs-fold-tab", "9112 5.2", "obs-fold with HTAB", get("/", "X-A: 1", "\t2"))
bad("leading-ws-field", "9112 2.2", "whitespace before the first field", b"GET / HTTP/1.1\r\n Host: h\r\n\r\n")
bad("nul-value", "9110 5.5", "NUL in a value", get("/", "X-A: a\x00b"))
bad("bel-value", "9110 5.5", "BEL in a value", get("/", "X-A: a\x07b"))
bad("del-value", "9110 5.5", "DEL in a value", get("/", "X-A: a\x7fb"))
bad("vt-value", "9110 5.5", "VT in a value", get("/", "X-A: a\x0bb"))
bad("cr-value", "9112 2.2", "bare CR in a value", get("/", "X-A: a\rb"))
bad("lf-value", "9112 2.2", "bare LF ending a field", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nContent-Length: 3\r\n\r\nabc")
bad("name-paren", "9110 5.1", "( in a name", get("/", "Bad(Name): x"))
bad("name-quote", "9110 5.1", '" in a name', get("/", 'X"A: x'))
bad("name-space", "9110 5.1", "SP in a name", get("/", "X A: x"))
bad("name-obs-text", "9110 5.1", "obs-text in a name", get("/", "Content-Length\xdf: 3"))
bad("name-nul", "9110 5.1", "NUL in a name", get("/", "X-\x00A: x"))
bad("name-empty", "9110 5.1", "an empty name", get("/", ": x"))
bad("no-colon", "9112 5", "a field without a colon", get("/", "X-A"))
bad("singleton-content-type", "choice (9110 5.3)", "Content-Type twice, different values",
    get("/", "Content-Type: a/b", "Content-Type: c/d"))
bad("singleton-authorization", "choice (9110 5.3)", "Authorization twice, different values",
    get("/", "Authorization: Basic a", "Authorization: Basic b"))
bad("singleton-range", "choice (9110 5.3)", "Range twice, different values",
    get("/", "Range: bytes=0-1", "Range: bytes=2-3"))
bad("singleton-ims", "choice (9110 5.3)", "If-Modified-Since twice, different values",
    get("/", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", "If-Modified-Since: Mon, 07 Nov 1994 08:49:37 GMT"))
bad("singleton-referer", "choice (9110 5.3)", "Referer twice, different values",
    get("/", "Referer: http://a/", "Referer: http://b/"))
bad("too-many-fields", "9110 5.4", "120 fields", get("/", *[f"X-F{i}: {i}" for i in range(119)]), 431)
bad("field-too-long", "9110 5.4", "a field line over 8190 bytes", get("/", "X-Big: " + "v" * 9000), 431)
bad("section-too-large", "9110 5.4", "a header section over 64 KiB",
    get("/", *[f"X-F{i}: " + "v" * 4000 for i in range(20)]), 431)

# ---- Host (RFC 9112 3.2, RFC 9110 7.2) ----
ok("host-port", "9110 7.2", "host:port", head("GET / HTTP/1.1", "Host: example.com:8080"),
   fields={"HTTP_HOST": "example.com:8080"})
ok("host-ipv6", "9110 7.2", "IP literal", head("GET / HTTP/1.1", "Host: [::1]:80"), fields={"HTTP_HOST": "[::1]:80"})
ok("host-sub-delims", "3986 3.2.2", "sub-delims in a reg-name", head("GET / HTTP/1.1", "Host: 0.0.0.0=5000"),
   fields={"HTTP_HOST": "0.0.0.0=5000"})
ok("host-empty", "9112 3.2", "an empty Host", head("GET / HTTP/1.1", "Host:"), fields={"HTTP_HOST": ""})
ok("host-absolute-overrides", "9112 3.2.2", "absolute-form: the received Host is ignored",
   head("GET http://a.example/x HTTP/1.1", "Host: b.example"), target="http://a.example/x", path="/x",
   fields={"HTTP_HOST": "a.example"})
bad("host-twice-same", "9112 3.2", "two Host lines, same value", get("/", "Host: h"))
bad("host-twice", "9112 3.2", "two Host lines", get("/", "Host: evil.example"))
bad("host-space", "9112 3.2", "a Host with SP", head("GET / HTTP/1.1", "Host: a b"))
bad("host-two-colons", "9110 7.2", "host:port:port", head("GET / HTTP/1.1", "Host: a:1:2"))
bad("host-userinfo", "9110 7.2", "userinfo in Host", head("GET / HTTP/1.1", "Host: user@h"))
bad("host-slash", "9110 7.2", "a path in Host", head("GET / HTTP/1.1", "Host: h/x"))
bad("host-obs-text", "9110 7.2", "obs-text in Host", head("GET / HTTP/1.1", "Host: caf\xe9.example"))
bad("host-unclosed-ipv6", "3986 3.2.2", "unclosed IP literal", head("GET / HTTP/1.1", "Host: [::1"))
bad("host-port-only", "9110 7.2", "a port without host", head("GET / HTTP/1.1", "Host: :80"))

# ---- Content-Length (RFC 9112 6.2, 6.3, RFC 9110 8.6) ----
ok("cl-zero", "9110 8.6", "Content-Length: 0", get("/", "Content-Length: 0"), extra={"CONTENT_LENGTH": "0"})
ok("cl-get-body", "9110 9.3.1", "GET with a body", get("/", "Content-Length: 5") + b"hello",
   extra={"CONTENT_LENGTH": "5"}, body=b"hello")
ok("cl-leading-zeros", "9110 8.6", "leading zeros", post("Content-Length: 005", body=b"hello"), method="POST",
   target="/p", extra={"CONTENT_LENGTH": "005"}, body=b"hello")
ok("cl-ows", "9110 5.5", "OWS around the length", post("Content-Length:\t 5 ", body=b"hello"), method="POST",
   target="/p", extra={"CONTENT_LENGTH": "5"}, body=b"hello")
ok("cl-http10", "9112 6.2", "HTTP/1.0 POST with a length",
   head("POST /p HTTP/1.0", "Host: h", "Content-Length: 5") + b"hello", method="POST", target="/p",
   proto="HTTP/1.0", extra={"CONTENT_LENGTH": "5"}, body=b"hello")
ok("cl-body-is-a-request", "9112 6.3", "a body that looks like a request stays a body",
   head("GET /first HTTP/1.0", "Content-Length: 24") + b"GET /second HTTP/1.1\r\n\r\n", target="/first",
   proto="HTTP/1.0", fields={}, extra={"CONTENT_LENGTH": "24"}, body=b"GET /second HTTP/1.1\r\n\r\n")
ok("cl-case", "9110 5.1", "conTENT-Length", head("GET /u HTTP/1.0", "conTENT-Length: 5") + b"HELLO",
   target="/u", proto="HTTP/1.0", fields={}, extra={"CONTENT_LENGTH": "5"}, body=b"HELLO")
bad("cl-trailing-htab", "llhttp (9110 5.5)", "HTAB after the digits: llhttp refuses it",
    post("Content-Length: 5\t", body=b"hello"))
bad("cl-negative", "9110 8.6", "-1", post("Content-Length: -1"))
bad("cl-plus", "9110 8.6", "+5", post("Content-Length: +5", body=b"hello"))
bad("cl-minus-zero", "9110 8.6", "-0", post("Content-Length: -0"))
bad("cl-hex", "9110 8.6", "0x5", post("Content-Length: 0x5", body=b"hello"))
bad("cl-junk", "9110 8.6", "5x", post("Content-Length: 5x", body=b"hello"))
bad("cl-underscore", "9110 8.6", "0_1", post("Content-Length: 0_1"))
bad("cl-two-numbers", "9110 8.6", "0 1", post("Content-Length: 0 1", body=b"x"))
bad("cl-list", "9112 6.3", "5, 5", post("Content-Length: 5, 5", body=b"hello"))
bad("cl-twice-same", "9112 6.3", "two equal lengths", post("Content-Length: 5", "Content-Length: 5", body=b"hello"))
bad("cl-twice", "9112 6.3", "two different lengths", post("Content-Length: 5", "Content-Length: 6", body=b"hello!"))
bad("cl-overflow", "9110 8.6", "a length past 2^64", post("Content-Length: 99999999999999999999999"), 400, 413)
bad("cl-te", "9112 6.1", "Content-Length and Transfer-Encoding",
    post("Content-Length: 3", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"))
bad("te-cl", "9112 6.1", "Transfer-Encoding and Content-Length",
    post("Transfer-Encoding: chunked", "Content-Length: 3", body=b"0\r\n\r\n"))

# ---- Transfer-Encoding and chunked (RFC 9112 6.1, 6.3, 7) ----
ok("chunked", "9112 7.1", "chunked", chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), method="POST", target="/p",
   fields=TE, body=b"hello world")
ok("chunked-case", "9112 7", "ChUnKeD", post("Transfer-Encoding: ChUnKeD") + b"3\r\nabc\r\n0\r\n\r\n", method="POST",
   target="/p", fields={"HTTP_HOST": "h", "HTTP_TRANSFER_ENCODING": "ChUnKeD"}, body=b"abc")
ok("chunked-ows", "9110 5.5", "OWS around chunked", post("Transfer-Encoding: \t chunked ") + b"3\r\nabc\r\n0\r\n\r\n",
   method="POST", target="/p", fields=TE, body=b"abc")
ok("te-identity-chunked", "choice (9112 6.1)", "identity before chunked is nothing",
   post("Transfer-Encoding: identity, chunked") + b"3\r\nabc\r\n0\r\n\r\n", method="POST", target="/p",
   fields={"HTTP_HOST": "h", "HTTP_TRANSFER_ENCODING": "identity, chunked"}, body=b"abc")
ok("te-two-fields", "9110 5.3", "identity and chunked on two lines",
   post("Transfer-Encoding: identity", "Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\n\r\n", method="POST",
   target="/p", fields={"HTTP_HOST": "h", "HTTP_TRANSFER_ENCODING": "identity,chunked"}, body=b"abc")
ok("chunk-zeros", "9112 7.1", "leading zeros in a size", chunked(b"0005\r\nhello\r\n000\r\n\r\n"), method="POST",
   target="/p", fields=TE, body=b"hello")
ok("chunk-upper-hex", "9112 7.1", "upper-case hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), method="POST",
   target="/p", fields=TE, body=b"0123456789")
ok("chunk-many", "9112 7.1", "one-byte chunks", chunked(b"".join(b"1\r\n%c\r\n" % c for c in b"abcdefgh") + b"0\r\n\r\n"),
   method="POST", target="/p", fields=TE, body=b"abcdefgh")
ok("chunk-empty-body", "9112 7.1", "only the last chunk", chunked(b"0\r\n\r\n"), method="POST", target="/p", fields=TE)
ok("chunk-ext", "9112 7.1.1", "several extensions, with and without values",
   chunked(b"5; some; parameters=stuff\r\nhello\r\n6; blahblah; blah\r\n world\r\n0\r\n\r\n"), method="POST",
   target="/p", fields=TE, body=b"hello world")
ok("chunk-ext-bws", "9112 7.1.1", "BWS around ; and =", chunked(b"5 ;\ta = 1 ; b\r\nhello\r\n0\r\n\r\n"),
   method="POST", target="/p", fields=TE, body=b"hello")
ok("chunk-ext-quoted", "9112 7.1.1", "quoted-string values with ; \" and obs-text",
   chunked(b'5;foo="bar baz";q="a;b\\"c";o="\xff"\r\nhello\r\n0;last="x"\r\n\r\n'), method="POST", target="/p",
   fields=TE, body=b"hello")
ok("trailers", "9110 6.5", "trailers: read, not merged", chunked(b"5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\nX-Sum: 1\r\n\r\n"),
   method="POST", target="/p", fields=TE, body=b"hello")
ok("chunked-expect", "9110 10.1.1", "Expect: 100-continue with a chunked body",
   chunked(b"5\r\nhello\r\n0\r\n\r\n", "Expect: 100-continue"), method="POST", target="/p",
   fields={**TE, "HTTP_EXPECT": "100-continue"}, body=b"hello")
bad("te-gzip-chunked", "9112 6.1", "gzip, chunked: a coding we do not implement",
    post("Transfer-Encoding: gzip, chunked") + b"5\r\nhello\r\n0\r\n\r\n", 501)
bad("te-gzip", "9112 6.1", "gzip alone", post("Transfer-Encoding: gzip", body=b"x"), 501)
bad("te-identity", "9112 6.1", "identity alone", post("Transfer-Encoding: identity", body=b"x"), 501)
bad("te-xchunked", "9112 6.1", "xchunked", post("Transfer-Encoding: xchunked") + b"0\r\n\r\n", 501)
bad("te-chunked-param", "9112 7", "chunked with a parameter", post("Transfer-Encoding: chunked;q=1") + b"0\r\n\r\n",
    400, 501)
bad("te-chunked-gzip", "9112 6.3", "chunked not last", post("Transfer-Encoding: chunked, gzip") + b"0\r\n\r\n")
bad("te-chunked-twice", "9112 7", "chunked twice", post("Transfer-Encoding: chunked, chunked") + b"0\r\n\r\n")
bad("te-chunked-lines", "9112 7", "chunked on two lines",
    post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + b"0\r\n\r\n")
bad("te-empty-member", "9112 6.1", "an empty member", post("Transfer-Encoding: ,chunked") + b"0\r\n\r\n")
bad("te-http10", "9112 6.1", "Transfer-Encoding in HTTP/1.0",
    head("POST /p HTTP/1.0", "Host: h", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n")
bad("chunk-size-ws", "9112 7.1", "0 then SP without extension", chunked(b"5\r\nhello\r\n0 \r\n\r\n"))
bad("chunk-size-leading-ws", "9112 7.1", "SP before the size", chunked(b" 5\r\nhello\r\n0\r\n\r\n"))
bad("chunk-size-lf", "9112 7.1", "a size line ended by LF", chunked(b"5\nhello\r\n0\r\n\r\n"))
bad("chunk-size-missing", "9112 7.1", "an extension without size", chunked(b";foo=bar\r\nhello\r\n0\r\n\r\n"))
bad("chunk-size-empty", "9112 7.1", "an empty size line", chunked(b"\r\nhello\r\n0\r\n\r\n"))
bad("chunk-size-minus", "9112 7.1", "-5", chunked(b"-5\r\nhello\r\n0\r\n\r\n"))
bad("chunk-size-plus", "9112 7.1", "+5", chunked(b"+5\r\nhello\r\n0\r\n\r\n"))
bad("chunk-size-underscore", "9112 7.1", "6_0", chunked(b"6_0\r\n world\r\n0\r\n\r\n"))
bad("chunk-size-0x", "9112 7.1", "0x5", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"))
bad("chunk-size-overflow", "9112 7.1", "a size past 2^64", chunked(b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    400, 413)
bad("chunk-ext-cr", "9112 7.1.1", "bare CR in an extension", chunked(b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n"))
bad("chunk-ext-trailing-ws", "9112 7.1.1", "BWS with nothing after it", chunked(b"5;a \r\nhello\r\n0\r\n\r\n"))
bad("chunk-ext-empty-name", "9112 7.1.1", "; without a name", chunked(b"5;\r\nhello\r\n0\r\n\r\n"))
bad("chunk-ext-no-value", "9112 7.1.1", "= without a value", chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"))
bad("chunk-ext-open-quote", "9112 7.1.1", "an unclosed quote", chunked(b"5;a=\"x\r\nhello\r\n0\r\n\r\n"))
bad("chunk-ext-huge", "9112 7.1.1", "an extension over 1 KiB", chunked(b"5;" + b"e" * 2000 + b"\r\nhello\r\n0\r\n\r\n"))
bad("chunk-data-long", "9112 7.1", "more data than the size", chunked(b"2\r\nabc\r\n0\r\n\r\n"))
bad("chunk-data-lf", "9112 7.1", "data ended by LF alone", chunked(b"3\r\nabc\n0\r\n\r\n"))
bad("last-chunk-lf", "9112 7.1", "last chunk ended by LF alone", chunked(b"3\r\nabc\r\n0\n\n"))
for name in ("Content-Length", "Transfer-Encoding", "Host", "Trailer", "Connection", "Authorization", "Cookie",
             "Expect"):
    bad(f"trailer-{name.lower()}", "9110 6.5.1", f"{name} in a trailer",
        chunked(b"5\r\nhello\r\n0\r\n" + name.encode() + b": 1\r\n\r\n"))
bad("trailer-obs-fold", "9112 5.2", "obs-fold in a trailer", chunked(b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"))
bad("trailer-space-colon", "9112 5.1", "SP before the colon in a trailer", chunked(b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n"))

# ---- Connection, Expect, Upgrade (RFC 9110 7.6.1, 7.8, 10.1.1; RFC 9112 9.3) ----
ok("connection-close", "9112 9.6", "Connection: close ends the connection", get("/", "Connection: close"),
   fields={"HTTP_HOST": "h", "HTTP_CONNECTION": "close"}, closes=True)
ok("connection-option", "9110 7.6.1", "a field named in Connection does not pass a proxy",
   get("/", "Connection: X-Secret", "X-Secret: 1", "X-Kept: 2"),
   fields={"HTTP_HOST": "h", "HTTP_CONNECTION": "X-Secret", "HTTP_X_SECRET": "1", "HTTP_X_KEPT": "2"})
ok("hop-by-hop", "9110 7.6.1", "Keep-Alive, TE, Proxy-Connection do not pass a proxy",
   get("/", "Keep-Alive: 300", "TE: trailers", "Proxy-Connection: keep-alive"),
   fields={"HTTP_HOST": "h", "HTTP_KEEP_ALIVE": "300", "HTTP_TE": "trailers",
           "HTTP_PROXY_CONNECTION": "keep-alive"})
ok("expect-continue", "9110 10.1.1", "Expect: 100-continue with a body",
   post("Expect: 100-continue", "Content-Length: 5", body=b"hello"), method="POST", target="/p",
   fields={"HTTP_HOST": "h", "HTTP_EXPECT": "100-continue"}, extra={"CONTENT_LENGTH": "5"}, body=b"hello")
ok("expect-other", "9110 10.1.1", "an expectation we do not know is ignored", get("/", "Expect: something"),
   fields={"HTTP_HOST": "h", "HTTP_EXPECT": "something"})
ok("expect-http10", "9110 10.1.1", "100-continue in HTTP/1.0 is ignored",
   head("POST /p HTTP/1.0", "Expect: 100-continue", "Content-Length: 2") + b"ab", method="POST", target="/p",
   proto="HTTP/1.0", fields={"HTTP_EXPECT": "100-continue"}, extra={"CONTENT_LENGTH": "2"}, body=b"ab")
ok("upgrade", "9110 7.8", "Upgrade is not performed: a plain answer, then close",
   get("/ws", "Connection: Upgrade", "Upgrade: websocket"), target="/ws",
   fields={"HTTP_HOST": "h", "HTTP_CONNECTION": "Upgrade", "HTTP_UPGRADE": "websocket"}, closes="either")


def via_proxy(case, proxy_port):
    """The environ the app sees through the proxy: the upstream hop is
    HTTP/1.1 with a Host always, the target in origin-form, hop-by-hop
    fields and those named in Connection dropped, Expect answered by the
    proxy, and the body forwarded with a Content-Length. An upgrade request
    (HTTP/1.1, Connection: upgrade, Upgrade) keeps its Upgrade, with the
    proxy's own "Connection: upgrade": the upstream may take it (a tunnel,
    docs/proxy.md)."""
    env = dict(case.env)
    options = [o.strip().lower() for o in env.get("HTTP_CONNECTION", "").split(",")]
    upgrade = env.get("HTTP_UPGRADE") if "upgrade" in options and env.get("SERVER_PROTOCOL") == "HTTP/1.1" else None
    for opt in env.get("HTTP_CONNECTION", "").split(","):
        env.pop("HTTP_" + opt.strip().upper().replace("-", "_"), None)
    for k in ("HTTP_CONNECTION", "HTTP_KEEP_ALIVE", "HTTP_PROXY_CONNECTION", "HTTP_TE", "HTTP_TRANSFER_ENCODING",
              "HTTP_UPGRADE", "HTTP_TRAILER", "HTTP_EXPECT"):
        env.pop(k, None)
    if upgrade:
        env["HTTP_UPGRADE"], env["HTTP_CONNECTION"] = upgrade, "upgrade"
    env["SERVER_PROTOCOL"] = "HTTP/1.1"
    env["RAW_URI"] = case.origin
    env.setdefault("HTTP_HOST", f"127.0.0.1:{proxy_port}")
    if case.body or "CONTENT_LENGTH" in env or env["REQUEST_METHOD"] in ("POST", "PUT", "PATCH"):
        env["CONTENT_LENGTH"] = str(len(case.body))
    return env


def cite(rfc):
    """"9112 3.2.2" -> "RFC 9112 §3.2.2"; "choice (9110 9.1)" -> "choice, RFC 9110 §9.1"."""
    def one(ref):
        num, _, sec = ref.partition(" ")
        extra = ""
        if " (" in sec:
            sec, _, extra = sec.partition(" (")
            extra = " (" + extra
        return f"RFC {num}" + (f" §{sec}" if sec else "") + extra
    if "(" in rfc and rfc.split(" ", 1)[0] in ("choice", "llhttp"):
        word, _, ref = rfc.partition(" (")
        return f"{word}, {one(ref.rstrip(')'))}"
    return one(rfc)


def sort_key(c):
    word = c.rfc.split(" ", 1)[0]
    ref = c.rfc.partition("(")[2].rstrip(")") if word in ("choice", "llhttp") else c.rfc
    num, _, sec = ref.partition(" ")
    parts = [int(p) if p.isdigit() else 0 for p in sec.split(" ")[0].split(".") if p]
    return (int(num) if num.isdigit() else 0, parts, c.valid is False, c.id)


def table():
    """The matrix as a Markdown table, one row per case, by RFC section
    (docs/security.md holds this output)."""
    rows = ["| RFC | case | request | answer |", "|---|---|---|---|"]
    for c in sorted(CASES, key=sort_key):
        answer = "served" if c.valid else "refused " + "/".join(str(s) for s in sorted(c.status))
        rows.append(f"| {cite(c.rfc)} | `{c.id}` | {c.what} | {answer} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
