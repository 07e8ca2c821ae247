"""The stacks the chaos script disturbs: appstack on sockets held across
restarts, and nginx in front of gunicorn or uWSGI as benchlib starts them.

Every stack offers the same operations: reload(), kill_worker(), scale(n),
restart(n) (the n-th restart: even ones restart the front, odd ones the app
server) and max_requests (set before start()). An operation a stack has no
documented way to do raises NotSupported."""
import os
import random
import signal
import subprocess
import time

from benchlib import procs, stacks

from .held import HeldProc, HeldSocket


class NotSupported(Exception):
    pass


SKIPPED = "skipped"     # an operation that had nothing to act on


def age_s(pid):
    """Seconds since PID started; 0 if it is gone."""
    try:
        start = int(procs._stat_fields(pid)[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start
    except (OSError, ValueError, IndexError):
        return 0.0


class _Chaos:
    max_requests = 0
    options = ()            # appstack only: "SECTION.KEY=VALUE" lines for its INI
    graceful_timeout = 30
    kill_min_age = 1.0      # s: kill workers that had time to load the app

    def kill_worker(self):
        pids = [p for p in self.worker_pids() if age_s(p) >= self.kill_min_age]
        if not pids:
            return SKIPPED      # all of them are still starting: not an error
        os.kill(random.choice(pids), signal.SIGKILL)
        return None

    def _respawn(self, old, start):
        """Stops OLD the way its service manager would, then START()s anew."""
        old.stop(timeout=self.graceful_timeout + 5)
        if old in self.procs:
            self.procs.remove(old)
        start()


class Appstack(_Chaos, stacks.AppstackFront):
    """appstackd and appstack-proxy on sockets this process holds, so that
    stopping and starting either refuses nothing (a .socket unit's job)."""
    key, label = "appstack", "appstack"

    def start(self):
        text = open(self.ini(f"unix:{self.dir}/app.sock", proxy=True)).read()
        extra = f"graceful_timeout = {self.graceful_timeout}\n"
        if self.max_requests:
            extra += f"max_requests = {self.max_requests}\n"
        text = text.replace("[supervisor]\n", "[supervisor]\n" + extra, 1)
        for opt in self.options:
            section, _, line = opt.partition(".")
            key, _, value = line.partition("=")
            text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)
        self.ini_path = self.write("appstack.ini", text)
        self.app_sock = HeldSocket(f"unix:{self.dir}/app.sock", "app")
        self.http_sock = HeldSocket(f"127.0.0.1:{self.port}", "http")
        self._start_master()
        self._start_proxy()

    def _held(self, name, argv, sock, stop_signal=signal.SIGTERM, env=None):
        p = HeldProc(name, argv, os.path.join(self.dir, name + ".log"), [sock], env=env,
                     stop_signal=stop_signal)
        self.procs.append(p)
        return p

    def _start_master(self):
        self.master = self._held("appstackd", [self.ctx.prog("appstackd"), "-c", self.ini_path],
                                 self.app_sock, env=stacks.python_env(self.app))

    def _start_proxy(self):
        self.proxy = self._held("appstack-proxy", [self.ctx.prog("appstack-proxy"), "-c", self.ini_path],
                                self.http_sock)

    def supctl(self, *args):
        r = subprocess.run([self.ctx.prog("supctl"), "-c", self.ini_path, *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        return None if r.returncode == 0 else f"supctl {' '.join(args)}: {r.stdout.strip()[-300:]}"

    def reload(self):
        return self.supctl("reload")

    def scale(self, n):
        return self.supctl("scale", str(n))

    def restart(self, n):
        if n % 2 == 0:
            self._respawn(self.proxy, self._start_proxy)
        else:
            self._respawn(self.master, self._start_master)
        return None

    def stop(self):
        super().stop()
        for s in (getattr(self, "app_sock", None), getattr(self, "http_sock", None)):
            if s:
                s.close()


class _NginxPeer(_Chaos):
    def reload(self):
        # The started process is the master (no taskset here), and keeps its
        # pid across a HUP; the pid file is briefly missing during one.
        os.kill(self.master.pid, signal.SIGHUP)
        return None

    def _start_front(self):
        # benchlib writes nginx.conf afresh; the same file serves again.
        conf = os.path.join(self.dir, "nginx.conf")
        self.proxy = self.spawn("nginx", ["nginx", "-p", self.dir, "-c", conf,
                                          "-e", f"{self.dir}/nginx-error.log"])

    def restart(self, n):
        if n % 2 == 0:
            self._respawn(self.proxy, self._start_front)
        else:
            self._respawn(self.master, self._start_app)
        return None


class Gunicorn(_NginxPeer, stacks.NginxGunicorn):
    key, label = "gunicorn", "nginx+gunicorn"

    def start(self):
        self.sock = f"{self.dir}/gunicorn.sock"
        self._start_app()
        self.start_nginx(stacks.PROXY_TO_GUNICORN.format(sock=self.sock))

    def _start_app(self):
        argv = stacks.gunicorn_argv(self.app, self.workers, "unix:" + self.sock, self.dir)
        if self.max_requests:
            argv[-1:-1] = ["--max-requests", str(self.max_requests)]
        self.master = self.spawn("gunicorn", argv, env=stacks.python_env(self.app))

    def scale(self, n):
        # gunicorn adds or retires one worker per TTIN or TTOU.
        have = len(self.worker_pids())
        sig = signal.SIGTTIN if n > have else signal.SIGTTOU
        for _ in range(abs(n - have)):
            os.kill(self.master.pid, sig)
            time.sleep(0.02)
        return None


class Uwsgi(_NginxPeer, stacks.NginxUwsgi):
    key, label = "uwsgi", "nginx+uWSGI"

    def start(self):
        self.sock = f"{self.dir}/uwsgi.sock"
        self._start_app()
        self.start_nginx(stacks.PASS_TO_UWSGI.format(sock=self.sock))

    def _start_app(self):
        argv = stacks.uwsgi_argv(self.app, self.workers, ["--socket", self.sock], self.dir)
        if self.max_requests:
            argv += ["--max-requests", str(self.max_requests)]
        self.master = self.spawn("uwsgi", argv, env=stacks.python_env(self.app))

    def scale(self, n):
        raise NotSupported("uWSGI has no command to set the number of workers")


ALL = (Appstack, Gunicorn, Uwsgi)

