"""[app] preload = on shares the app's memory: the example Django site's
workers, forked from one template, each hold far less private memory
(/proc/PID/smaps_rollup) than workers that imported Django themselves.
(The PSS of a whole pool against gunicorn and uWSGI is bench/run's.)"""
import os

from opsutil import Stack, django_site, get_status  # noqa: F401

WORKERS = 3


def private_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[name] = int(rest.split()[0])
    return fields["Private_Clean"] + fields["Private_Dirty"]


def workers_private(d, site, app_extra):
    os.makedirs(d)
    s = Stack(d, workers=WORKERS, module=site["module"], chdir=site["chdir"],
              app_extra=site["app_extra"] + app_extra)
    try:
        s.start()
        for _ in range(30):     # memory after serving, not just after import
            assert get_status(s.port, "/") == 200
        pids = s.serving_pids()
        assert len(pids) == WORKERS
        return sorted(private_kib(p) for p in pids)
    finally:
        s.stop()


def test_preloaded_workers_share_the_apps_memory(tmpdir_short, django_site):
    plain = workers_private(os.path.join(tmpdir_short, "a"), django_site, "")
    preload = workers_private(os.path.join(tmpdir_short, "b"), django_site, "preload = on\n")
    print(f"private KiB per worker: without preload {plain}, with preload {preload}")
    # Far below: the imported app's pages stay shared with the template.
    assert max(preload) < 0.5 * min(plain), (plain, preload)
