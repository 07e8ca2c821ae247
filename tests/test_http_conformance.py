"""The HTTP/1.1 conformance matrix (tests/conformance.py), every case sent
to a worker directly and through the proxy in front of it, followed by a
last request on the same connection. A valid case must reach the app once,
with exactly the environ and body the matrix names (through the proxy:
as its forwarding rules change it), then the last request; an invalid one
must get one answer with an allowed status, Connection: close and a closed
connection, and never reach the app."""
import hashlib

import pytest

from conformance import CASES, via_proxy
from hostileutil import exchange, says_close, stack  # noqa: F401 (stack: a fixture)

LAST = b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
# Owned by the forwarding rules (test_proxy_forward.py), not by HTTP/1.1.
SKIP_KEYS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_FORWARDED",
             "HTTP_X_REQUEST_ID")


def responses(data, head_first):
    """[(status, head)] of the responses in DATA; the first has no body
    when it answers HEAD."""
    out = []
    while data.startswith(b"HTTP/1.1 "):
        head, sep, data = data.partition(b"\r\n\r\n")
        if not sep:
            break
        status = int(head[9:12])
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            fields[k.strip().lower()] = v.strip()
        if status >= 200:
            n = 0 if head_first and not out else int(fields.get(b"content-length", b"0"))
            data = data[n:]
            out.append((status, head))
    return out


def seen_env(entry):
    return {k: v for k, v in entry["env"].items() if k not in SKIP_KEYS}


@pytest.mark.parametrize("target", ["worker", "proxy"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_conformance(stack, target, case):
    mark = stack.mark()
    answer, closed = exchange(stack.ports[target], case.data + LAST, timeout=10)
    got = responses(answer, case.valid and case.env["REQUEST_METHOD"] == "HEAD")
    seen = stack.since(mark)
    assert closed, f"{case.id} ({case.rfc}): the connection stayed open"
    if not case.valid:
        assert [s for s, _ in got] in [[s] for s in case.status], (case.rfc, answer[:300])
        assert b"\r\nconnection: close" in got[0][1].lower()
        assert seen == [], f"{case.id} ({case.rfc}): a refused request reached the app"
        return
    expected = case.env if target == "worker" else via_proxy(case, stack.ports["proxy"])
    assert [e["path"] for e in seen][:1] == [expected["PATH_INFO"]], (case.rfc, seen, answer[:300])
    assert seen_env(seen[0]) == expected, case.rfc
    assert seen[0]["body_sha256"] == hashlib.sha256(case.body).hexdigest(), (case.rfc, seen[0]["body_head"])
    assert [s for s, _ in got] == [200] * len(seen), (case.rfc, answer[:300])
    if case.closes == "either":
        assert [e["path"] for e in seen[1:]] in ([], ["/last"])
    elif case.closes:
        assert len(seen) == 1 and says_close(answer), (case.rfc, answer[:300])
    else:
        assert [e["path"] for e in seen[1:]] == ["/last"], (case.rfc, seen)


def test_matrix_size():
    valid = sum(c.valid for c in CASES)
    assert valid >= 75 and len(CASES) - valid >= 75 and len({c.id for c in CASES}) == len(CASES)
    assert all(c.rfc for c in CASES)


def test_docs_table_is_the_matrix():
    """docs/security.md shows this matrix, not an older one."""
    from conformance import table
    from conftest import SRCDIR
    with open(f"{SRCDIR}/docs/security.md") as f:
        doc = f.read()
    start = doc.index("<!-- conformance table: python3 tests/conformance.py -->\n") + 57
    end = doc.index("<!-- end of conformance table -->")
    assert doc[start:end] == table(), "run python3 tests/conformance.py and paste its output into docs/security.md"
