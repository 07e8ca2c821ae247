"""The reference docs against the code they describe.

appstack.ini(5) must document every option the config parser knows, and
only those; each program's man page must list the options its --help
lists; the man pages must build, render and install; and every link in
the README and docs/ must resolve inside the source tree.

Which options the parser knows is asked of the parser itself: every word
in a string literal of the C sources is a candidate, and appstackd --check /
appstack-proxy --check say which candidates are unknown keys. So the test
follows the code however its key tables are written."""
import glob
import os
import re
import subprocess
import tempfile

import docutils.frontend
import docutils.nodes
import docutils.parsers.rst
import docutils.utils
import pytest

from conftest import BUILDDIR, SRCDIR, prog

MAN_SRC = os.path.join(SRCDIR, "docs", "man")
INI_DOC = os.path.join(MAN_SRC, "appstack.ini.5.rst")
PAGES = ["appstack.7", "appstack.ini.5", "appstackd.8", "appstack-proxy.8", "appstack-worker.8", "supctl.8",
         "appstack-init.8"]
CHECKERS = ["appstackd", "appstack-proxy"]


def parse_rst(path):
    with open(path) as f:
        text = f.read()
    settings = docutils.frontend.get_default_settings(docutils.parsers.rst.Parser)
    settings.report_level = 5
    doc = docutils.utils.new_document(path, settings)
    docutils.parsers.rst.Parser().parse(text, doc)
    return doc


def top_sections(doc):
    """{title: section node} of the page's sections."""
    return {s[0].astext(): s for s in doc.findall(docutils.nodes.section)}


def definitions(section):
    """[(term, {field: text}, body text)] of the definition lists directly
    in SECTION (not in its subsections)."""
    out = []
    for dl in section.children:
        if isinstance(dl, docutils.nodes.option_list):   # "-c FILE, --config FILE" lines
            out += [(item[0].astext(), {}, item[1].astext()) for item in dl.children]
        if not isinstance(dl, docutils.nodes.definition_list):
            continue
        for item in dl.children:
            term = item[0].astext()
            fields = {}
            for f in item.findall(docutils.nodes.field):
                fields[f[0].astext()] = f[1].astext()
            out.append((term, fields, item[1].astext()))
    return out


def documented_options():
    """{header: {key: fields}} from appstack.ini(5): the sections titled
    "[...]" and the options in their definition lists. The header to probe
    is the title in lower case ("[location /PREFIX/]" -> "[location /prefix/]")."""
    doc = parse_rst(INI_DOC)
    out = {}
    for title, sec in top_sections(doc).items():
        if title.startswith("[") and title.endswith("]"):
            out[title.lower()] = {term: fields for term, fields, _ in definitions(sec)}
    return out


def check(path):
    """stderr of both checkers on PATH."""
    return "".join(subprocess.run([prog(p), "--check", "-c", path], capture_output=True, text=True,
                                  timeout=30).stderr for p in CHECKERS)


def candidates():
    words = set()
    for d in ("common", "supervisor", "proxy", "worker"):
        for path in glob.glob(os.path.join(SRCDIR, d, "*.c")):
            with open(path, errors="replace") as f:
                words |= set(re.findall(r'"([a-z][a-z0-9_]*)"', f.read()))
    return sorted(words)


@pytest.fixture(scope="module")
def docs():
    return documented_options()


@pytest.fixture
def ini(tmp_path):
    def write(text):
        path = tmp_path / "probe.ini"
        path.write_text(text)
        return str(path)
    return write


def test_sections_documented_are_the_sections_known(docs, ini):
    assert {"[app]", "[supervisor]", "[proxy]"} <= set(docs), sorted(docs)
    lines = []
    for w in candidates():
        lines += [f"[{w}]", f"[{w} /x/]"]
    path = ini("\n".join(lines) + "\n")
    out = check(path)
    unknown = {int(n) for n in re.findall(re.escape(path) + r":(\d+): unknown section", out)}
    known = {lines[i].strip("[]").split()[0] for i in range(len(lines)) if i + 1 not in unknown}
    documented = {h.strip("[]").split()[0] for h in docs}
    assert known == documented, (
        f"sections the parser knows but appstack.ini(5) does not document: {sorted(known - documented)}; "
        f"documented but unknown to the parser: {sorted(documented - known)}")


def test_every_option_the_parser_knows_is_documented(docs, ini):
    words = candidates()
    for header, documented in docs.items():
        path = ini(header + "\n" + "".join(f"{w} = x\n" for w in words))
        out = check(path)
        assert f"{path}:1: unknown section" not in out, f"the parser does not know the section {header}"
        unknown = set(re.findall(r'unknown key "([^"]+)"', out))
        known = set(words) - unknown
        missing = sorted(known - set(documented))
        assert not missing, f"{header}: options the parser knows that appstack.ini(5) does not document: {missing}"


def test_no_documented_option_is_unknown(docs, ini):
    for header, documented in docs.items():
        path = ini(header + "\n" + "".join(f"{k} = x\n" for k in documented))
        out = check(path)
        invented = sorted(set(re.findall(r'unknown key "([^"]+)"', out)))
        assert not invented, f"{header}: appstack.ini(5) documents options the parser does not know: {invented}"


def test_every_option_has_default_unit_and_a_valid_example(docs, ini):
    for header, documented in docs.items():
        lines = [header]
        for key, fields in documented.items():
            for name in ("Default", "Unit", "Example"):
                assert fields.get(name, "").strip(), f"{header} {key}: no :{name}: field"
            example = fields["Example"].strip()
            assert re.fullmatch(re.escape(key) + r" = \S.*", example), f"{header} {key}: example {example!r}"
            lines.append(example)
        path = ini("\n".join(lines) + "\n")
        out = check(path)
        for n, example in enumerate(lines[1:], start=2):
            errors = [e for e in re.findall(re.escape(path) + f":{n}: (.*)", out)
                      if not e.startswith("warning:") and "needs appstackd to start as root" not in e]
            assert not errors, f"{header}: the documented example {example!r} is refused: {errors}"


def help_options(name):
    # appstack-init(8) is "appstack init": its options and appstack's own.
    commands = [["appstack", "--help"], ["appstack", "init", "--help"]] if name == "appstack-init" else [[name, "--help"]]
    out = "".join(subprocess.run([prog(c[0]), *c[1:]], capture_output=True, text=True, timeout=30).stdout
                  for c in commands)
    return out, set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", out))


@pytest.mark.parametrize("name", ["appstackd", "appstack-proxy", "appstack-worker", "supctl", "appstack-init"])
def test_man_page_options_match_help(name):
    page = os.path.join(MAN_SRC, f"{name}.8.rst")
    sections = top_sections(parse_rst(page))
    documented = set()
    for term, _, _ in definitions(sections["OPTIONS"]):
        documented |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", term))
    text, helped = help_options(name)
    # --json is an option of "supctl status", documented with the command.
    helped.discard("--json")
    assert helped == documented, (f"{name}: in --help but not in {name}(8): {sorted(helped - documented)}; "
                                  f"in {name}(8) but not in --help: {sorted(documented - helped)}")
    if name == "supctl":
        commands = set(re.findall(r"^  ([a-z]+)\b", text.split("Commands:")[1].split("Options:")[0], re.M))
        manned = {t.split()[0] for t, _, _ in definitions(sections["COMMANDS"])}
        assert commands == manned, f"supctl --help commands {sorted(commands)}, supctl(8): {sorted(manned)}"


def test_man_pages_build_and_render_without_warnings():
    for page in PAGES:
        path = os.path.join(BUILDDIR, "docs", "man", page)
        assert os.path.exists(path), f"{path} was not built"
        with open(path) as f:
            th = [line for line in f if line.startswith(".TH ")]
        assert len(th) == 1 and re.search(r'"appstack \d+\.\d+', th[0]), th
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True, text=True,
                           env=dict(os.environ, LC_ALL="C.UTF-8"), timeout=30)
        assert r.returncode == 0 and not r.stderr.strip(), f"{page}: {r.stderr}"


def test_make_install_puts_the_man_pages_in_place():
    with tempfile.TemporaryDirectory() as dest:
        r = subprocess.run(["make", "-s", "-C", BUILDDIR, "install", f"DESTDIR={dest}", "prefix=/usr"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        for page in PAGES:
            section = page.rsplit(".", 1)[1]
            assert os.path.isfile(os.path.join(dest, "usr", "share", "man", f"man{section}", page)), page
        assert os.path.isfile(os.path.join(dest, "usr", "share", "doc", "appstack", "architecture.md"))


def local_links():
    """(file, target) of every relative link in README.md, docs/*.md and
    the man page sources."""
    out = []
    for path in [os.path.join(SRCDIR, "README.md")] + glob.glob(os.path.join(SRCDIR, "docs", "*.md")):
        with open(path) as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            out.append((path, target))
    for path in glob.glob(os.path.join(MAN_SRC, "*.rst")):
        with open(path) as f:
            for target in re.findall(r"`[^`<]*<([^>]+)>`_", f.read()):
                out.append((path, target))
    return [(p, t) for p, t in out if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_links_resolve_inside_the_source_tree():
    links = local_links()
    assert any("docs/man/" in t for p, t in links if p.endswith("README.md")), "README links no man page"
    for path, target in links:
        resolved = os.path.realpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
        rel = os.path.relpath(path, SRCDIR)
        assert resolved.startswith(SRCDIR + os.sep), f"{rel}: link {target} leaves the source tree"
        assert os.path.exists(resolved), f"{rel}: link {target} does not exist"
