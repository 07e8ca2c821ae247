"""[app] preload = on: a template process imports the app once and forks
the workers. The workers share its memory, a respawn is a fork, a reload
makes a new template with the new code (or fails and changes nothing),
and what a fork of a loaded interpreter breaks (threads, locks, random
state, database connections, descriptors) is dealt with. The forked
workers stay ordinary workers for appstackd."""
import json
import os
import re
import signal
import threading
import time

from conftest import APPS, wait_for
from supervisorutil import copy_app, get, pid_alive, sup_config, supervisor, wait_gone  # noqa: F401

PRELOAD = "preload = on"


def info(port, path="/", timeout=10):
    status, body = get(port, path, timeout=timeout)
    assert status == 200, body
    return json.loads(body)


def each_worker(port, n, seconds=0.4):
    """One info from each of N workers: N requests at a time, each taken by
    an idle worker while the others sleep, until N workers have answered."""
    seen = {}
    for _ in range(10):
        out = [None] * n

        def one(k):
            out[k] = info(port, f"/sleep?{seconds}", timeout=20)
        ts = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert all(out), out
        for i in out:
            seen.setdefault(i["pid"], i)
        if len(seen) >= n:
            break
    return list(seen.values())


def template(s):
    """(pid, state) of the serving generation's template."""
    st = s.status()
    ts = [t for t in st["templates"] if t["generation"] == st["generation"]]
    assert len(ts) == 1, st["templates"]
    return ts[0]["pid"], ts[0]["state"]


def start(supervisor, tmpdir, port, module="preload_app:application", workers=2, app_dir=None, app_extra="",
          **kw):
    cfg = sup_config(tmpdir, port, module=module, workers=workers, app_dir=app_dir,
                     app_extra=PRELOAD + "\n" + app_extra, **kw)
    return supervisor(config=cfg, workers=workers)


def test_workers_are_forked_from_the_template(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=2)
    tpid, state = template(s)
    assert state == "ready"
    master = s.proc.pid
    for w in s.status()["workers"]:
        assert w["pid"] != tpid
        with open(f"/proc/{w['pid']}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        assert ppid == master, "appstackd must be the parent of a forked worker"
    i = info(port)
    assert i["import_pid"] == tpid and i["pid"] != tpid and i["ppid"] == master
    # The template forks; it never takes a connection.
    assert not any(w["pid"] == tpid for w in s.status()["workers"])
    assert "first-request set-up" not in s.log_text(), "no Django, nothing to set up"


def test_kill_9_worker_is_forked_again_from_the_template(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=1)
    tpid, _ = template(s)
    old = s.ready_pids()[0]
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    i = info(port, timeout=20)      # waits in the socket's queue until the new worker takes it
    took = time.monotonic() - t0
    assert i["pid"] != old and i["import_pid"] == tpid, i
    assert template(s) == (tpid, "ready")
    assert s.status()["last_failure"] is None     # killed from outside: no failed start
    assert "forked from the template" in s.log_text()
    print(f"kill -9 to the first answer of the forked worker: {took * 1000:.1f} ms")


def test_killed_template_is_replaced_and_workers_serve_on(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=2)
    tpid, _ = template(s)
    pids = s.ready_pids()
    os.kill(tpid, signal.SIGKILL)
    new = wait_for(lambda: template(s)[1] == "ready" and template(s)[0] != tpid and template(s)[0],
                   timeout=20, what="a new template")
    assert s.ready_pids() == pids       # the workers never noticed
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in s.ready_pids() and len(s.ready_pids()) == 2, timeout=20, what="the respawn")
    by_pid = {i["pid"]: i["import_pid"] for i in each_worker(port, 2)}
    assert set(by_pid) == set(s.ready_pids())
    # The survivor came from the old template, the new worker from the new one.
    assert by_pid[pids[1]] == tpid
    assert [v for p, v in by_pid.items() if p != pids[1]] == [new]


def test_reload_makes_a_new_template_with_the_new_code(supervisor, tmpdir_short, port):
    app_dir = copy_app(tmpdir_short, "preload_app.py")
    s = start(supervisor, tmpdir_short, port, workers=2, app_dir=app_dir)
    tpid, _ = template(s)
    old = s.ready_pids()
    assert info(port)["version"] == "one"
    rewrite(app_dir, 'VERSION = "one"', 'VERSION = "two"')
    r = s.supctl("reload")
    assert r.returncode == 0, r
    i = info(port)
    assert i["version"] == "two"
    new_tpid, state = template(s)
    assert new_tpid != tpid and state == "ready" and i["import_pid"] == new_tpid
    s.wait_ready(2)
    assert not set(s.ready_pids()) & set(old)
    # The old generation's template goes with it.
    wait_gone([tpid])
    assert [t["pid"] for t in s.status()["templates"]] == [new_tpid]


def test_reload_with_syntax_error_keeps_the_old_generation_and_template(supervisor, tmpdir_short, port):
    app_dir = copy_app(tmpdir_short, "preload_app.py")
    s = start(supervisor, tmpdir_short, port, workers=2, app_dir=app_dir)
    tpid, _ = template(s)
    old = s.ready_pids()
    rewrite(app_dir, 'VERSION = "one"', 'VERSION = "broken\ndef (:\n')
    r = s.supctl("reload")
    assert r.returncode == 1, r
    assert "SyntaxError" in r.stderr and "preload_app.py" in r.stderr, r.stderr
    assert "generation 1 keeps serving" in r.stderr
    assert s.ready_pids() == old and template(s) == (tpid, "ready")
    for _ in range(5):
        assert info(port)["version"] == "one"
    st = s.status()
    assert st["generation"] == 1 and st["reloads"] == {"ok": 0, "failed": 1}
    # The failed generation's template is gone; a respawn still forks from the old one.
    wait_for(lambda: [t["pid"] for t in s.status()["templates"]] == [tpid], timeout=10, what="one template")
    os.kill(old[0], signal.SIGKILL)
    wait_for(lambda: len(s.ready_pids()) == 2 and old[0] not in s.ready_pids(), timeout=20, what="the respawn")
    assert all(info(port)["import_pid"] == tpid for _ in range(5))


def test_template_that_cannot_import_is_retried_and_answers_503(supervisor, tmpdir_short, port):
    app_dir = copy_app(tmpdir_short, "preload_app.py")
    rewrite(app_dir, "import json", "import json, no_such_module_here")
    s = supervisor(config=sup_config(tmpdir_short, port, module="preload_app:application", app_dir=app_dir,
                                     app_extra=PRELOAD), wait=False)
    s.wait_control()
    wait_for(lambda: (s.status()["last_failure"] or {}).get("failing"), timeout=20, what="the failure")
    st = s.status()
    assert "No module named 'no_such_module_here'" in st["last_failure"]["text"]
    assert st["answering_503"] and get(port)[0] == 503
    assert not st["workers"], "no worker may be started without a template"
    rewrite(app_dir, "import json, no_such_module_here", "import json")
    s.wait_ready(2, timeout=40)
    assert info(port)["import_pid"] == template(s)[0]
    assert s.log_text().count("No module named 'no_such_module_here'") == 1, "logged once, then 'the same error'"


def rewrite(app_dir, old, new, name="preload_app.py"):
    path = os.path.join(app_dir, name)
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


# -- what a fork of a loaded interpreter breaks --------------------------------

def test_thread_started_at_import_with_its_lock_held_at_fork(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, module="preload_thread_app:application", workers=2)
    assert "the app started threads while it was imported (ticker)" in s.log_text()
    for i in each_worker(port, 2, seconds=0) + each_worker(port, 2, seconds=0):
        # The app's own at-fork hook ran: a lock of its own, its thread again.
        assert "ticker" in i["threads"] and i["ticked"] > 0, i


def test_logging_lock_held_by_another_thread_at_fork(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, module="preload_logging_app:application", workers=2)
    pids = set()
    for _ in range(10):
        i = info(port, timeout=5)
        assert i["logged_in"] < 1, i
        pids.add(i["pid"])
    tpid, _ = template(s)
    assert tpid not in pids


def test_database_connections_opened_at_import(supervisor, tmpdir_short, port):
    extra = (f"pythonpath = {APPS}/djangoproj\nenv = DJANGOPROJ_DB={tmpdir_short}/django.sqlite3\n"
             f"env = PRELOAD_RAW_DB={tmpdir_short}/raw.sqlite3")
    s = start(supervisor, tmpdir_short, port, module="preload_db_app:application", workers=2, app_extra=extra)
    seen = each_worker(port, 2, seconds=0.2) + [info(port) for _ in range(6)]
    seen += each_worker(port, 2, seconds=0.2)
    # Django's connection of each worker is its own, not the template's.
    assert all(i["own_connection"] for i in seen), seen
    assert len({i["pid"] for i in seen}) == 2
    # Every insert of either worker landed, through both kinds of connection.
    last = info(port)
    assert last["django_rows"] == last["raw_rows"] > len(seen), (last, seen)
    assert "before forking a worker" not in s.log_text()


# -- Django's first-request set-up, done once in the template ------------------

def test_django_urlconf_and_templates_are_set_up_before_the_fork(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, module="preload_django_app:application", workers=2)
    tpid, _ = template(s)
    log = s.log_text()
    assert "Django's first-request set-up done once before forking (URLconf" in log, log
    assert "left to each worker's first request" not in log, log
    for i in each_worker(port, 2, seconds=0):
        # The first request of each worker found the URLconf imported and
        # the template compiled by the template process.
        assert i["pid"] != tpid and i["urls_import_pid"] == tpid, i
        assert "page.html" in i["cached_before"], i
        assert i["html"] == "<ul><li>A</li><li>B</li></ul>\n", i


def test_django_urlconf_that_cannot_be_imported_fails_its_requests_as_without_preload(supervisor, tmpdir_short,
                                                                                      port):
    s = start(supervisor, tmpdir_short, port, module="preload_django_app:application", workers=1,
              app_extra="env = PRELOAD_BROKEN_URLS=1")
    assert template(s)[1] == "ready"
    assert ("first-request set-up left to each worker's first request: URLconf (RuntimeError: this URLconf "
            "cannot be imported)") in s.log_text()
    for _ in range(2):
        assert get(port)[0] == 500      # Django's own answer, in the worker, each time
    assert s.status()["last_failure"] is None


def test_each_worker_has_its_own_random_state(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=3)
    draws = {i["pid"]: i["first_draw"] for i in each_worker(port, 3)}
    assert len(draws) == 3 and len(set(draws.values())) == 3, draws
    # A worker forked later from the same template draws anew too.
    victim = next(iter(draws))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(s.ready_pids()) == 3 and victim not in s.ready_pids(), timeout=20, what="the respawn")
    again = {i["pid"]: i["first_draw"] for i in each_worker(port, 3)}
    assert len(set(again.values()) | set(draws.values())) == 4, (draws, again)


def fd_links(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def test_workers_share_no_descriptor_but_the_listening_socket(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=3)
    tpid, _ = template(s)
    kinds = ("pipe:", "socket:")  # (anon inodes all read the same)
    links = {pid: {v for v in fd_links(pid).values() if v.startswith(kinds)} for pid in s.ready_pids()}
    template_links = {v for v in fd_links(tpid).values() if v.startswith(kinds)}
    listening = None
    pids = list(links)
    for a in pids:
        for b in pids:
            if a < b:
                shared = links[a] & links[b]
                assert len(shared) == 1, (a, b, shared)     # the app socket, nothing else
                listening = listening or shared
    for pid in pids:
        # None of the template's own pipes (stdio, signals) and channel.
        assert links[pid] & template_links == listening, (pid, links[pid] & template_links)
    # Each worker has the same kinds of descriptors as one appstackd execs.
    counts = {pid: len(fd_links(pid)) for pid in pids}
    assert len(set(counts.values())) == 1, counts


def test_forked_worker_output_has_its_own_pid(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=2)
    pid = info(port, "/print")["pid"]
    wait_for(lambda: f"appstack-worker[{pid}]: printed by {pid}" in s.log_text(), timeout=10,
             what="the worker's stdout line")
    assert f"appstack-worker[{pid}]: warning: written to stderr by {pid}" in s.log_text()


def test_forked_workers_and_the_template_die_with_the_master(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=2)
    tpid, _ = template(s)
    pids = s.ready_pids() + [tpid]
    s.proc.kill()
    s.proc.wait()
    wait_gone(pids, timeout=10)
    s.log.close()


def test_stuck_forked_worker_is_killed_with_its_stack(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=2, timeout=1)
    tpid, _ = template(s)
    r = s.supctl("dump")
    assert r.returncode == 0 and r.stdout.count("worker ") == 2, r
    t = threading.Thread(target=lambda: _ignore(lambda: get(port, "/hang", timeout=30)), daemon=True)
    t.start()
    t.join(15)
    assert not t.is_alive()
    text = wait_for(lambda: "killed: request GET /hang" in s.log_text() and s.log_text(), timeout=10,
                    what="the kill entry")
    assert re.search(r'File ".*preload_app\.py", line \d+ in application', text), text[-3000:]
    s.wait_ready(2)
    assert template(s) == (tpid, "ready")


def test_max_requests_replacement_is_forked(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, workers=1, extra="max_requests = 5")
    tpid, _ = template(s)
    first = s.ready_pids()
    for _ in range(5):
        info(port)
    wait_for(lambda: s.ready_pids() and not set(first) & set(s.ready_pids()), timeout=20, what="the replacement")
    assert info(port)["import_pid"] == tpid
    wait_for(lambda: s.status()["restarts"]["max_requests"] == 1, timeout=10, what="the recycled worker's exit")


def _ignore(fn):
    try:
        fn()
    except OSError:
        pass
