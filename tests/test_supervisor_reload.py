"""Graceful reload: new code from a new generation, no failed request; an app
that cannot load leaves the old generation serving and fails `supctl reload`
with the Python error."""
import os
import signal
import threading
import time

from supervisorutil import copy_app, get, sup_config, supervisor, wait_for  # noqa: F401


def rewrite(app_dir, old, new):
    path = os.path.join(app_dir, "sup_app.py")
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


class Client(threading.Thread):
    """Requests in a loop; counts what did not come back 200."""

    def __init__(self, port):
        super().__init__()
        self.port, self.done, self.failures, self.bodies = port, threading.Event(), [], set()

    def run(self):
        while not self.done.is_set():
            try:
                status, body = get(self.port)
                self.bodies.add(body.split()[0])
                if status != 200:
                    self.failures.append(status)
            except OSError as e:
                self.failures.append(repr(e))

    def stop(self):
        self.done.set()
        self.join()


def test_reload_serves_new_code_without_failures(supervisor, tmpdir_short, port):
    app_dir = copy_app(tmpdir_short)
    s = supervisor(config=sup_config(tmpdir_short, port, app_dir=app_dir, workers=3), workers=3)
    old = s.ready_pids()
    assert get(port)[1].startswith("one ")
    rewrite(app_dir, 'VERSION = "one"', 'VERSION = "second"')
    clients = [Client(port) for _ in range(2)]
    for c in clients:
        c.start()
    time.sleep(0.3)
    r = s.supctl("reload")
    assert r.returncode == 0, r
    assert "generation 2" in r.stdout
    # Right after the reply, the new code answers.
    assert get(port)[1].startswith("second ")
    time.sleep(0.3)
    for c in clients:
        c.stop()
    assert all(c.failures == [] for c in clients), [c.failures for c in clients]
    assert {"one", "second"} <= set().union(*(c.bodies for c in clients))
    s.wait_ready(3)
    new = s.ready_pids()
    assert not set(new) & set(old)
    st = s.status()
    assert st["generation"] == 2 and all(w["generation"] == 2 for w in st["workers"])
    assert st["reloads"] == {"ok": 1, "failed": 0}
    assert sum(st["restarts"].values()) == 0, st["restarts"]    # retired workers are no restarts


def test_reload_waits_for_in_flight_requests_of_old_workers(supervisor):
    s = supervisor(workers=2)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=get(s.port, "/sleep?1.5", timeout=20)))
    t.start()
    wait_for(lambda: any(w["state"] == "busy" for w in s.status()["workers"]), timeout=5)
    assert s.supctl("reload").returncode == 0
    t.join(20)
    assert result["r"][0] == 200


def test_reload_with_syntax_error_keeps_old_generation(supervisor, tmpdir_short, port):
    app_dir = copy_app(tmpdir_short)
    s = supervisor(config=sup_config(tmpdir_short, port, app_dir=app_dir, workers=2), workers=2)
    old = s.ready_pids()
    rewrite(app_dir, 'VERSION = "one"', 'VERSION = "broken\ndef (:\n')
    r = s.supctl("reload")
    assert r.returncode == 1, r
    assert "SyntaxError" in r.stderr and "sup_app.py" in r.stderr, r.stderr
    assert "generation 1 keeps serving" in r.stderr
    assert r.stdout == ""
    assert s.ready_pids() == old
    for _ in range(5):
        assert get(port)[1].startswith("one ")
    st = s.status()
    assert st["generation"] == 1 and not st["reloading"]
    assert "SyntaxError" in st["last_failure"]["text"]
    assert st["reloads"] == {"ok": 0, "failed": 1} and not st["last_failure"]["failing"]
    # Once fixed, a reload works again.
    rewrite(app_dir, 'VERSION = "broken\ndef (:\n', 'VERSION = "fixed"')
    assert s.supctl("reload").returncode == 0
    assert get(port)[1].startswith("fixed ")


def test_reload_with_config_error_keeps_serving(supervisor, tmpdir_short, port):
    s = supervisor(workers=2)
    old = s.ready_pids()
    with open(s.config, "a") as f:
        f.write("workers = many\n")
    r = s.supctl("reload")
    assert r.returncode == 1
    assert f"{s.config}:" in r.stderr and '"many" is not a whole number' in r.stderr, r.stderr
    assert s.ready_pids() == old and get(port)[0] == 200


def test_reload_by_sighup_and_listen_change_is_reported(supervisor, tmpdir_short, port):
    s = supervisor(workers=2)
    old = s.ready_pids()
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: s.status()["generation"] == 2 and len(s.ready_pids()) == 2
             and not set(s.ready_pids()) & set(old), timeout=20, what="generation 2")
    with open(s.config) as f:
        text = f.read()
    with open(s.config, "w") as f:
        f.write(text.replace(f"127.0.0.1:{port}", "127.0.0.1:1"))
    r = s.supctl("reload")
    assert r.returncode == 0 and "listen changed" in r.stdout, r
    assert get(port)[0] == 200      # still on the old socket


def test_app_that_cannot_load_backs_off_and_shows_why(supervisor, tmpdir_short, port):
    s = supervisor(module="no_such_module_here:application", workers=2, wait=False)
    s.wait_control()
    st = wait_for(lambda: (st := s.status())["last_failure"] and st["last_failure"]["failing"] and st,
                  timeout=30, what="a start failure")
    assert "no_such_module_here" in st["last_failure"]["text"]
    time.sleep(2)
    # Backoff: 0.1, 0.2, 0.4, 0.8 s... a handful of attempts in 2 s, no storm.
    attempts = s.log_text().count("starting, generation 1")
    assert 2 <= attempts <= 10, attempts
    text = s.supctl("status")
    assert text.returncode == 0 and "still failing" in text.stdout and "no_such_module_here" in text.stdout


def test_scale_during_a_reload_applies_to_the_new_generation(supervisor, tmpdir_short, port):
    """The new generation loads slowly; `supctl scale 3` meanwhile: the
    reload completes with 3 workers of generation 2."""
    app_dir = copy_app(tmpdir_short)
    s = supervisor(config=sup_config(tmpdir_short, port, app_dir=app_dir, workers=2), workers=2)
    with open(os.path.join(app_dir, "sup_app.py"), "a") as f:
        f.write("\ntime.sleep(1.5)\n")     # the import of the new code takes 1.5 s
    result = {}
    t = threading.Thread(target=lambda: result.update(r=s.supctl("reload")))
    t.start()
    wait_for(lambda: s.status()["reloading"], timeout=10, what="the reload to start")
    r = s.supctl("scale", "3")
    assert r.returncode == 0, r
    t.join(30)
    assert result["r"].returncode == 0, result["r"]
    assert "generation 2 serves with 3 workers" in result["r"].stdout
    ws = s.wait_ready(3, timeout=30)
    assert {w["generation"] for w in ws} == {2}
