"""The shared HTTP request parser (common/http_parse.c), through its driver
tests/http_parse_test: every request is parsed fed whole and fed in small
pieces (down to one byte per read), and both must give the same verdict."""
import json
import subprocess

import pytest

from conftest import prog

CHUNKINGS = (0, 1, 2, 5, 13)


def run_all(data, chunks, limits=None, fail_after=None, lookup=None):
    """[(messages, end)] for each read size in CHUNKS (one driver process)."""
    args = [prog("tests/http_parse_test"), "-c", ",".join(str(c) for c in chunks)]
    if limits:
        args += ["-l", ",".join(str(v) for v in limits)]
    if fail_after is not None:
        args += ["-f", str(fail_after)]
    if lookup:
        args += ["-h", lookup]
    proc = subprocess.run(args, input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    runs, messages = [], []
    for line in proc.stdout.decode().splitlines():
        obj = json.loads(line)
        if obj.get("end"):
            runs.append((messages, obj))
            messages = []
        else:
            messages.append(obj)
    assert len(runs) == len(chunks)
    return runs


def run(data, chunk=0, **kw):
    return run_all(data, [chunk], **kw)[0]


def comparable(messages, end):
    """What must not depend on the chunking: everything, except how far the
    parser read into a request it refused (the connection closes anyway)."""
    out = []
    for m in messages:
        m = dict(m)
        if m["state"] == "error":
            m.pop("bytes")
        out.append(m)
    if messages and messages[-1]["state"] == "error":
        end = {}
    end = {k: v for k, v in end.items() if k != "chunk"}
    return out, end


def parse(data, **kw):
    """Messages parsed from DATA, checked identical for every chunking."""
    runs = run_all(data, CHUNKINGS, **kw)
    first = comparable(*runs[0])
    for chunk, (messages, end) in zip(CHUNKINGS, runs):
        assert comparable(messages, end) == first, \
            f"chunk size {chunk} disagrees with whole feeding"
    return runs[0]


def one(data, **kw):
    messages, _ = parse(data, **kw)
    assert len(messages) == 1, messages
    return messages[0]


def status(data, **kw):
    m = one(data, **kw)
    assert m["state"] == "error", m
    return m["status"]


def ok(data, **kw):
    m = one(data, **kw)
    assert m["state"] == "done", m
    return m


GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_simple_get():
    m = ok(GET)
    assert m["method"] == "GET"
    assert m["target"] == "/index.html?q=1"
    assert m["version"] == "1.1"
    assert m["headers"] == [["Host", "example.com"]]
    assert m["content_length"] == -1
    assert not m["chunked"] and not m["expect_continue"] and not m["upgrade"]
    assert m["keep_alive"]
    assert m["head_bytes"] == len(GET) == m["bytes"]


def test_headers_kept_as_sent_and_trimmed():
    req = (b"GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-CASE:   spaced value \t \r\n"
           b"Empty:\r\nTabbed:\tv\r\nLatin: caf\xe9\r\n\r\n")
    m = ok(req, lookup="x-mixed-case")
    assert m["headers"] == [["Host", "a"], ["X-Mixed-CASE", "spaced value"],
                            ["Empty", ""], ["Tabbed", "v"], ["Latin", "caf\xe9"]]
    assert m["lookup"] == "spaced value"
    assert one(req, lookup="absent")["lookup"] is None


def test_body_with_content_length():
    m = ok(b"POST /f HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world")
    assert m["content_length"] == 11
    assert m["body"] == "hello world"
    assert m["body_received"] == 11


def test_pipelining_exact_counts():
    post = b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345"
    partial = b"GET /third HTTP/1.1\r\nHo"
    messages, end = parse(GET + post + partial)
    assert [m["state"] for m in messages] == ["done", "done", "head"]
    assert messages[0]["bytes"] == len(GET)
    assert messages[1]["bytes"] == len(post)
    assert messages[1]["head_bytes"] == len(post) - 5
    assert messages[1]["body"] == "12345"
    assert messages[2]["bytes"] == len(partial)
    assert end["consumed"] == end["total"]


def test_many_requests_reuse_storage():
    req = b"GET /x HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n"
    messages, end = run(req * 200)
    assert len(messages) == 200 and all(m["state"] == "done" for m in messages)
    assert end["moves"] == 0


def test_chunked_body_with_extensions_and_trailers():
    req = (b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n"
           b"6;flag\r\n world\r\n"
           b"A\r\n0123456789\r\n"
           b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n")
    messages, end = parse(req + GET)
    m = messages[0]
    assert m["state"] == "done" and m["chunked"]
    assert m["content_length"] == -1
    assert m["body"] == "hello world0123456789"
    assert m["headers"] == [["Transfer-Encoding", "chunked"]]  # trailers not kept
    assert m["bytes"] == len(req)
    assert messages[1]["target"] == "/index.html?q=1"
    assert end["consumed"] == end["total"]


def test_leading_empty_lines_tolerated():
    assert ok(b"\r\n\r\n" + GET)["target"] == "/index.html?q=1"
    assert status(b"\r\n" * 9 + GET) == 400


@pytest.mark.parametrize("req", [
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
])
def test_no_keep_alive(req):
    assert not ok(req)["keep_alive"]


@pytest.mark.parametrize("req", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
])
def test_keep_alive(req):
    assert ok(req)["keep_alive"]


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b" chunked ", b"\tchunked"])
def test_transfer_encoding_chunked_spellings(value):
    m = ok(b"POST / HTTP/1.1\r\nTransfer-Encoding: " + value + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert m["chunked"] and m["body"] == "abc"


def test_http10_chunked_is_refused():
    """RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing."""
    assert status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
                  b"1\r\na\r\n0\r\n\r\n") == 400


def test_expect_continue():
    body = b"Content-Length: 2\r\n\r\nab"
    assert ok(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n" + body)["expect_continue"]
    assert ok(b"PUT / HTTP/1.1\r\nExpect: foo, 100-continue\r\n" + body)["expect_continue"]
    assert ok(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")[
        "expect_continue"]
    assert not ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n" + body)["expect_continue"]
    assert not ok(b"PUT / HTTP/1.1\r\nExpect: 200-ok\r\n" + body)["expect_continue"]
    # no body to wait for: no 100 either
    assert not ok(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")["expect_continue"]


def test_upgrade_is_flagged_and_not_performed():
    up = (b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
          b"Upgrade: websocket\r\n\r\n")
    messages, _ = parse(up + GET)
    assert messages[0]["upgrade"] and messages[0]["state"] == "done"
    assert messages[1]["state"] == "done" and not messages[1]["upgrade"]
    with_body = (b"POST /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
                 b"Content-Length: 3\r\n\r\nabc")
    messages, _ = parse(with_body + GET)
    assert messages[0]["upgrade"] and messages[0]["body"] == "abc"
    assert messages[1]["target"] == "/index.html?q=1"


def test_asterisk_only_with_options():
    assert ok(b"OPTIONS * HTTP/1.1\r\n\r\n")["target"] == "*"
    assert status(b"GET * HTTP/1.1\r\n\r\n") == 400


def test_body_consumer_failure_is_500():
    # where the consumer gives up depends on the reads, so no chunking check
    for chunk in (0, 1):
        messages, _ = run(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd",
                          chunk=chunk, fail_after=2)
        assert [(m["state"], m["status"]) for m in messages] == [("error", 500)]


H = b"GET / HTTP/1.1\r\n"
P = b"POST / HTTP/1.1\r\n"
TE = P + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("req,code", [
    # framing conflicts and Content-Length
    (P + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400),
    (P + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400),
    (P + b"Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", 400),
    (P + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    (P + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    (P + b"Content-Length: +3\r\n\r\nabc", 400),
    (P + b"Content-Length: -1\r\n\r\n", 400),
    (P + b"Content-Length: 0x10\r\n\r\n", 400),
    (P + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    # Transfer-Encoding other than exactly chunked
    (P + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (P + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400),
    (P + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
    (P + b"Transfer-Encoding: identity\r\n\r\n", 501),
    (P + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (P + b"Transfer-Encoding: chunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
    (P + b"Transfer-Encoding: chunked \t\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
    # line endings, folding, control characters
    (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    (H + b"Host: a\n\r\n", 400),
    (H + b"Host: a\r\r\n\r\n", 400),
    (H + b"Host: a\rX: b\r\n\r\n", 400),
    (b"GET /\r HTTP/1.1\r\n\r\n", 400),
    (H + b"Host: a\r\n folded\r\n\r\n", 400),
    (H + b"Host: a\r\n\tfolded\r\n\r\n", 400),
    (H + b" Host: a\r\n\r\n", 400),
    (H + b"Host: a\x00b\r\n\r\n", 400),
    (H + b"Host: a\x01b\r\n\r\n", 400),
    (H + b"Host: a\x7fb\r\n\r\n", 400),
    (H + b"Host: a\x1bb\r\n\r\n", 400),
    # names
    (H + b"Host : a\r\n\r\n", 400),
    (H + b"Ho st: a\r\n\r\n", 400),
    (H + b"Ho\"st: a\r\n\r\n", 400),
    (H + b": a\r\n\r\n", 400),
    (H + b"Host\r\n\r\n", 400),
    (H + b"Host: a\r\nHost: b\r\n\r\n", 400),
    # request line
    (b"G(T / HTTP/1.1\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\n\r\n", 400),
    (b" GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1 \r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1 x\r\n\r\n", 400),
    (b"GET / HTTP/11.1\r\n\r\n", 400),
    (b"GET / http/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.x\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\n\r\n", 501),
    (b"Get / HTTP/1.1\r\n\r\n", 501),
    # versions
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\n\r\n", 505),
    (b"GET / HTTP/3.1\r\n\r\n", 505),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # targets an origin server does not take
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
    # chunked framing
    (TE + b"3 \r\nabc\r\n0\r\n\r\n", 400),
    (TE + b"3\nabc\n0\n\n", 400),
    (TE + b"x\r\nabc\r\n0\r\n\r\n", 400),
    (TE + b"-3\r\nabc\r\n0\r\n\r\n", 400),
    (TE + b"fffffffffffffffff\r\n", 400),
    (TE + b"fffffffffffffffe\r\nabc\r\n", 400),     # size + CRLF would wrap to 0
    (TE + b"8000000000000000\r\nabc\r\n", 400),
    (TE + b"3\r\nabcX\r\n0\r\n\r\n", 400),
    (TE + b"3\r\nabc\n0\r\n\r\n", 400),
    (TE + b"3;a=b\rabc\r\n0\r\n\r\n", 400),
    (TE + b"3;" + b"e" * 2000 + b"\r\nabc\r\n0\r\n\r\n", 400),
    (TE + b"0" * 2000 + b"3\r\nabc\r\n0\r\n\r\n", 400),
    (TE + b"3\r\nabc\r\n0\r\nX : 1\r\n\r\n", 400),
    (TE + b"3\r\nabc\r\n0\r\n folded\r\n\r\n", 400),
    (TE + b"3\r\nabc\r\n0\r\nX: a\x01\r\n\r\n", 400),
    (TE + b"3\r\nabc\r\n0\r\nX: a\n\r\n", 400),
])
def test_malformed(req, code):
    assert status(req) == code


def test_chunk_extension_at_cap_is_fine():
    line = b"3;" + b"e" * 1022  # the whole size line: 1024 bytes
    m = ok(TE + line + b"\r\nabc\r\n0\r\n\r\n")
    assert m["body"] == "abc"
    assert status(TE + line + b"e\r\nabc\r\n0\r\n\r\n") == 400


def test_chunked_framing_overhead_is_bounded():
    tiny = b"1;" + b"e" * 1000 + b"\r\nx\r\n"
    m = ok(TE + tiny * 40 + b"0\r\n\r\n")
    assert m["body"] == "x" * 40
    assert status(TE + tiny * 100 + b"0\r\n\r\n") == 400


# limits: (request line, fields, field size, header bytes, body)
def limits(line=0, fields=0, field=0, header=0, body=0):
    return (line, fields, field, header, body)


def test_request_line_limit():
    req = lambda target: b"GET " + target + b" HTTP/1.1\r\n\r\n"  # noqa: E731
    target = b"/" + b"a" * 49       # "GET " + 50 + " HTTP/1.1" = 63
    assert ok(req(target), limits=limits(line=63))["target"] == target.decode()
    assert status(req(target + b"a"), limits=limits(line=63)) == 414
    assert status(req(b"/" + b"a" * 5000), limits=limits(line=63)) == 414


def test_field_size_limit():
    line = b"X-Long: " + b"v" * 92  # 100 bytes, 102 with its CRLF (counted, as gunicorn does)
    assert ok(H + line + b"\r\n\r\n", limits=limits(field=102))["headers"][0][1] == "v" * 92
    assert status(H + line + b"v\r\n\r\n", limits=limits(field=102)) == 431
    assert status(H + line + b"\r\n\r\n", limits=limits(field=101)) == 431
    assert status(H + b"X: a\r\n" + line + b"vv\r\n\r\n", limits=limits(field=102)) == 431


def test_field_count_limit():
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(10))
    assert len(ok(H + fields + b"\r\n", limits=limits(fields=10))["headers"]) == 10
    assert status(H + fields + b"Y: v\r\n\r\n", limits=limits(fields=10)) == 431


def test_header_section_limit():
    # two 10-byte lines and the final CRLF: 22 bytes
    fields = b"X-1: abc\r\nX-2: abc\r\n"
    assert len(ok(H + fields + b"\r\n", limits=limits(header=22))["headers"]) == 2
    assert status(H + fields + b"\r\n", limits=limits(header=21)) == 431
    assert status(H + fields * 1000 + b"\r\n", limits=limits(header=1000)) == 431


def test_header_bytes_also_bound_trailers():
    req = TE + b"0\r\nX-T: " + b"v" * 200 + b"\r\n\r\n"
    assert status(req, limits=limits(header=100)) == 431
    assert ok(req, limits=limits(header=300))["body"] == ""


def test_content_length_body_limit():
    req = lambda n: P + b"Content-Length: %d\r\n\r\n" % n + b"b" * n  # noqa: E731
    assert ok(req(100), limits=limits(body=100))["body"] == "b" * 100
    assert status(req(101), limits=limits(body=100)) == 413
    assert status(P + b"Content-Length: 18446744073709551615\r\n\r\n") == 413


def test_chunked_body_limit():
    req = lambda a, b: (TE + b"%x\r\n" % a + b"b" * a + b"\r\n"  # noqa: E731
                        + b"%x\r\n" % b + b"c" * b + b"\r\n0\r\n\r\n")
    assert ok(req(60, 40), limits=limits(body=100))["body_received"] == 100
    assert status(req(60, 41), limits=limits(body=100)) == 413


def test_refused_before_body_arrives():
    # the verdict comes at the end of the header section, not after the body
    messages, _ = run(P + b"Content-Length: 1000\r\n\r\n", limits=limits(body=10))
    assert messages[0]["status"] == 413


def test_error_reports_no_keep_alive():
    m = one(b"GET / HTTP/1.1\nHost: a\n\n")
    assert m["state"] == "error" and m["error"]
    assert "keep_alive" not in m  # no head reported for a refused request


def test_reason_phrases():
    out = subprocess.run([prog("tests/http_parse_test"), "-r"], capture_output=True,
                         check=True, timeout=30).stdout
    reasons = json.loads(out)
    assert reasons["200"] == "OK"
    assert reasons["404"] == "Not Found"
    assert reasons["413"] == "Content Too Large"
    assert reasons["414"] == "URI Too Long"
    assert reasons["431"] == "Request Header Fields Too Large"
    assert reasons["501"] == "Not Implemented"
    assert reasons["505"] == "HTTP Version Not Supported"
    assert reasons["599"] == "Server Error"


CONTROLS = [c for c in range(32) if c not in (9, 10, 13)] + [127]


@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_deep_in_a_value(ctl):
    value = b"a" * 21 + bytes([ctl]) + b"b" * 30
    assert status(H + b"X-Long: " + value + b"\r\n\r\n") == 400


@pytest.mark.parametrize("offset", range(9))
def test_control_character_at_every_word_offset(offset):
    for ctl in (0, 0x1f, 0x7f):
        assert status(H + b"X: " + b"v" * offset + bytes([ctl]) + b"w" * 20 + b"\r\n\r\n") == 400
    assert ok(H + b"X: " + b"v" * offset + b"\x80\xff~ " + b"w" * 20 + b"\r\n\r\n")
    value = "v" * (offset + 1) + "\t" + "w" * 20
    assert ok(H + b"X: " + value.encode() + b"\r\n\r\n")["headers"] == [["X", value]]


# ---- RFC 9110/9112 behaviour beyond llhttp's own (request line, targets,
# chunk extensions, Transfer-Encoding, Host, singletons, trailers) ----

@pytest.mark.parametrize("method", [b"QUERY", b"PROPFIND", b"MKCOL", b"VERSION-CONTROL", b"M-SEARCH",
                                    b"-BLARGH", b"X", b"PATCH", b"TRACE", b"A1!#$%&'*+.^_`|~"])
def test_any_upper_case_token_method(method):
    m = ok(method + b" /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert m["method"] == method.decode() and m["path"] == "/x"


@pytest.mark.parametrize("line", [b"G(T / HTTP/1.1", b"GET: / HTTP/1.1", b"GE\x80T / HTTP/1.1",
                                  b"G\"T / HTTP/1.1"])
def test_method_must_be_a_token(line):
    assert status(line + b"\r\n\r\n") == 400


@pytest.mark.parametrize("target,path,query,host", [
    (b"/a/b?x=1&y", "/a/b", "x=1&y", None),
    (b"/a?", "/a", "", None),
    (b"/a#frag", "/a", None, None),
    (b"/a?q=1#frag?x", "/a", "q=1", None),
    (b"/a#f?not-query", "/a", None, None),
    (b"///keeping_slashes", "///keeping_slashes", None, None),
    (b"/with_\"quotes\"?foo=\"bar\"", "/with_\"quotes\"", "foo=\"bar\"", None),
    (b"/caf\xc3\xa9/\xff", "/caf\xc3\xa9/\xff", None, None),
    (b"/%41%2f?%zz", "/%41%2f", "%zz", None),
    (b"http://example.com/foo?q=1", "/foo", "q=1", "example.com"),
    (b"HTTPS://Example.COM:8443/foo", "/foo", None, "Example.COM:8443"),
    (b"http://[::1]:8080/foo", "/foo", None, "[::1]:8080"),
    (b"http://user:pass@example.com:8080/foo?q=1", "/foo", "q=1", "example.com:8080"),
    (b"http://example.com", "/", None, "example.com"),
    (b"http://example.com?q", "/", "q", "example.com"),
    (b"http://example.com#f", "/", None, "example.com"),
])
def test_target_forms(target, path, query, host):
    m = ok(b"GET " + target + b" HTTP/1.1\r\nHost: other.example\r\n\r\n")
    assert (m["path"], m["query"]) == (path, query)
    assert m["target"] == target.decode("latin-1")
    assert m["form"] == ("absolute" if host else "origin")
    # RFC 9112 3.2.2: in absolute-form the authority is the Host
    assert m["headers"] == [["Host", host or "other.example"]]


def test_absolute_form_adds_the_host_it_names():
    m = ok(b"GET http://h.example:81/p HTTP/1.0\r\nAccept: */*\r\n\r\n")
    assert m["headers"] == [["Accept", "*/*"], ["Host", "h.example:81"]]


def test_options_asterisk_and_absolute_form_without_path():
    assert ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")["form"] == "asterisk"
    m = ok(b"OPTIONS http://h.example:8001 HTTP/1.1\r\n\r\n")
    assert (m["form"], m["path"]) == ("absolute", "*")      # RFC 9112 3.2.4


@pytest.mark.parametrize("target", [
    b"*", b"foo/bar", b"example.com:443", b"ftp://example.com/", b"http:/x", b"http://", b"http:///x",
    b"http://a@b@c/", b"http://[::1/", b"http://ex ample/", b"http://exa%zzmple/", b"://x/", b"1http://x/",
    b"/a%zz", b"/a%2", b"/100%", b"?x", b"#f",
])
def test_targets_refused(target):
    assert status(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n") == 400


def test_tab_in_request_line_refused():
    assert status(b"GET /a\tb HTTP/1.1\r\n\r\n") == 400
    assert status(b"GET\t/ HTTP/1.1\r\n\r\n") == 400


@pytest.mark.parametrize("version,code", [
    (b"HTTP/1.2", "1.1"), (b"HTTP/1.9", "1.1"), (b"HTTP/0.9", 505), (b"HTTP/2.0", 505), (b"HTTP/9.9", 505),
    (b"HTTP/1.10", 400), (b"HTTP/0.99", 400), (b"HTTP/1", 400), (b"HTTP/1.1.1", 400), (b"HTTPS/1.1", 400),
])
def test_versions(version, code):
    req = b"GET / " + version + b"\r\nHost: h\r\n\r\n"
    if isinstance(code, int):
        assert status(req) == code
    else:
        assert ok(req)["version"] == code      # RFC 9110 2.5: as the highest 1.x we know


@pytest.mark.parametrize("line", [
    b"5; some; parameters=stuff", b"5 ; a = 1", b"5\t;\ta\t=\t1", b"5;a=1;b=2", b"5;foo=\"bar baz\"",
    b"5;q=\"a;b\\\"c\";n", b"5;n=\"\\\xff\xfe\"", b"005;a", b"5;a;b;c",
])
def test_chunk_extensions_accepted(line):
    m = ok(TE + line + b"\r\nhello\r\n0;last=\"x\"\r\n\r\n")
    assert m["body"] == "hello"


@pytest.mark.parametrize("line", [
    b"5 ", b"5;a ", b"5;", b"5; ", b"5;=1", b"5;a=", b"5;a= ", b"5;a=\"x", b"5;a=\"x\"y", b"5;a=b c",
    b"5;a=\"\x01\"", b"5;a@b", b" 5", b"5 5", b"+5", b"-5", b"0x5", b"5;a=\"x\rn\"", b"",
])
def test_chunk_size_lines_refused(line):
    assert status(TE + line + b"\r\nhello\r\n0\r\n\r\n") == 400


@pytest.mark.parametrize("te,code", [
    (b"identity, chunked", None), (b"identity\r\nTransfer-Encoding: chunked", None), (b"CHUNKED", None),
    (b"gzip, chunked", 501), (b"gzip\r\nTransfer-Encoding: chunked", 501), (b"identity", 501), (b"gzip", 501),
    (b"chunked, gzip", 400), (b"chunked\r\nTransfer-Encoding: gzip", 400), (b"chunked, chunked", 400),
    (b"identity, chunked, identity, chunked", 400), (b",chunked", 400), (b"chunked,", 400), (b"", 400),
])
def test_transfer_codings(te, code):
    req = P + b"Transfer-Encoding: " + te + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    if code:
        assert status(req) == code
    else:
        assert ok(req)["body"] == "hello"


def test_http10_transfer_encoding_with_length_refused():
    assert status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello") == 400


@pytest.mark.parametrize("host,good", [
    (b"example.com", True), (b"example.com:8080", True), (b"0.0.0.0=5000", True), (b"[::1]:80", True),
    (b"", True), (b"a_b.example", True), (b"ex ample.com", False), (b"example.com:80:80", False),
    (b"a/b", False), (b"user@example.com", False), (b":80", False), (b"[::1", False), (b"caf\xe9.example", False),
])
def test_host_values(host, good):
    req = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    if good:
        assert ok(req)["headers"][0][1] == host.decode()
    else:
        assert status(req) == 400


def test_http11_without_host_is_served():
    # RFC 9112 3.2 says 400; served, as gunicorn and uWSGI do (docs/security.md)
    assert ok(b"GET / HTTP/1.1\r\n\r\n")["headers"] == []


@pytest.mark.parametrize("name", [b"Content-Type", b"Authorization", b"If-Modified-Since", b"Range",
                                  b"User-Agent", b"Referer", b"Max-Forwards", b"content-type"])
def test_singleton_fields(name):
    same = ok(H + b"Content-Type: a\r\n".replace(b"Content-Type", name) + name + b": a\r\n\r\n")
    assert same["headers"] == [[name.decode(), "a"]]
    assert status(H + name + b": a\r\n" + name + b": b\r\n\r\n") == 400


def test_list_fields_may_repeat():
    m = ok(H + b"Accept: a\r\nX-A: 1\r\nAccept: b\r\nCookie: c=1\r\nCookie: d=2\r\n\r\n")
    assert [h[0] for h in m["headers"]] == ["Accept", "X-A", "Accept", "Cookie", "Cookie"]


@pytest.mark.parametrize("name", [b"Content-Length", b"Transfer-Encoding", b"Host", b"Trailer", b"Connection",
                                  b"Upgrade", b"TE", b"Authorization", b"Cookie", b"Expect", b"content-length"])
def test_trailers_that_must_not_be_trailers(name):
    assert status(TE + b"5\r\nhello\r\n0\r\n" + name + b": 1\r\n\r\n") == 400


def test_other_trailers_are_read_and_dropped():
    m = ok(TE + b"5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\nX-Checksum: 1\r\n"
           + b"X-" + b"L" * 100 + b": 1\r\n\r\n")
    assert m["body"] == "hello" and m["headers"] == [["Transfer-Encoding", "chunked"]]


def test_options_absolute_form_with_a_query_is_not_asterisk():
    m = ok(b"OPTIONS http://h.example?q HTTP/1.1\r\n\r\n")
    assert (m["path"], m["query"]) == ("/", "q")    # RFC 9112 3.2.4: "*" only without a query
