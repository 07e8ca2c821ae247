"""Every server configuration the benchmark compares, each started on
loopback from its own config files in a private directory.

The peers run with their documented production settings; nothing is tuned
down. Where a default would refuse the benchmark's 1024 connections (accept
backlogs, nginx worker_connections) it is raised, as production setups do."""
import os
import signal
import socket
import subprocess
import textwrap
import threading
import urllib.request

from . import net, netns, procs, ws

PYTHON = "/usr/bin/python3"
UWSGI_PLUGIN = "python3"
# Extra options from --gunicorn-args / --uwsgi-args, to try a peer's variant.
EXTRA = {"gunicorn": [], "uwsgi": []}


class Context:
    """What every stack needs: where the programs are and where to write."""

    def __init__(self, builddir, workdir, server_cpus, front_processes=1):
        self.builddir = builddir
        self.workdir = workdir
        self.server_cpus = server_cpus     # taskset list, or None
        self.front_processes = front_processes  # appstack-proxy's workers, nginx's for the TLS rows
        self.seq = 0
        self._tls = None

    def tls(self):
        """(certificate, key): one ECDSA P-256 pair for every TLS stack of
        the run, made with the openssl command on first use."""
        if not self._tls:
            d = os.path.join(self.workdir, "tls")
            os.makedirs(d, exist_ok=True)
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                           check=True, capture_output=True, timeout=60)
            self._tls = (cert, key)
        return self._tls

    def prog(self, name):
        return os.path.join(self.builddir, name)

    def new_dir(self, name):
        self.seq += 1
        d = os.path.join(self.workdir, f"{self.seq:03d}-{name}")
        os.makedirs(d)
        return d


def python_env(app):
    """Environment for the Python side: the system interpreter's, never the
    one of a pyenv or virtualenv that happens to be on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYENV_VERSION")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["PYTHONPATH"] = app.chdir
    env.update(app.env)
    return env


class Stack:
    key = ""            # id in the results files
    label = ""          # column/row label for people
    appstack = False
    programs = ()       # built programs this stack needs (appstack only)

    def __init__(self, ctx, app, workers):
        self.ctx, self.app, self.workers = ctx, app, workers
        self.dir = ctx.new_dir(self.key)
        self.port = net.free_port()
        self.procs = []
        self.proxy = None       # Proc of the front, if any
        self.master = None      # Proc of the app server, if any

    scheme = "http"

    def url(self, path="/"):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def spawn(self, name, argv, stop_signal=signal.SIGTERM, env=None, cwd=None, pass_fds=()):
        p = procs.Proc(name, argv, os.path.join(self.dir, name + ".log"),
                       cpus=self.ctx.server_cpus, env=env, cwd=cwd, stop_signal=stop_signal, pass_fds=pass_fds)
        self.procs.append(p)
        return p

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip())
        return path

    def start(self):
        raise NotImplementedError

    def wait_ready(self, path="/", timeout=60.0):
        net.wait_ready(self.url(path), self.procs, timeout=timeout)

    def worker_pids(self):
        return procs.children(self.master.pid) if self.master else []

    def proxy_pids(self):
        return [self.proxy.pid] + procs.descendants(self.proxy.pid) if self.proxy else []

    def all_pids(self):
        out = []
        for p in self.procs:
            out += [p.pid] + procs.descendants(p.pid)
        return out

    def stop(self):
        # Front first, so it does not log a storm of upstream errors.
        for p in reversed(self.procs):
            p.stop()


# ---- appstack ---------------------------------------------------------------

IO_THREADS = 8     # threads per worker of the I/O-bound group, every stack


class _Appstack(Stack):
    appstack = True
    app_options = ""            # more [app] lines, e.g. "preload = on\n"
    supervisor_options = ""     # more [supervisor] lines
    proxy_extra = ""        # more [proxy] lines (compression rows)

    def ini(self, supervisor_listen, proxy=False):
        """The one INI file (appstack.ini(5)) both appstackd and appstack-proxy read;
        without SUPERVISOR_LISTEN only the proxy's part."""
        a = self.app
        env = "".join(f"env = {k}={v}\n" for k, v in sorted(a.env.items()))
        text = ""
        if supervisor_listen:
            text += (f"[app]\nmodule = {a.module}\nchdir = {a.chdir}\n{env}{self.app_options}\n"
                     f"[supervisor]\nlisten = {supervisor_listen}\nworkers = {self.workers}\n"
                     f"control = {self.dir}/control.sock\n{self.supervisor_options}\n")
        if proxy:
            text += (f"[proxy]\nlisten = 127.0.0.1:{self.port}\nworkers = {self.ctx.front_processes}\n"
                     f"upstream = unix:{self.dir}/app.sock\n{self.proxy_extra}")
            if a.static_dir:
                text += f"\n[location /static/]\nalias = {a.static_dir.rstrip('/')}/\nexpires = 30d\n"
        return self.write("appstack.ini", text)

    def start_master(self, ini):
        self.master = self.spawn("appstackd", [self.ctx.prog("appstackd"), "-c", ini],
                                 stop_signal=signal.SIGINT, env=python_env(self.app))

    def start_proxy(self, ini):
        self.proxy = self.spawn("appstack-proxy", [self.ctx.prog("appstack-proxy"), "-c", ini])

    def worker_pids(self):
        # Only the worker processes, not any helper the master may fork.
        pids = super().worker_pids()
        return [p for p in pids if _comm(p).startswith("appstack-worke")] or pids


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class AppstackDirect(_Appstack):
    key, label = "appstack-worker", "appstack workers"
    programs = ("appstackd", "appstack-worker")

    def start(self):
        self.start_master(self.ini(f"127.0.0.1:{self.port}"))


class AppstackDirectPreload(AppstackDirect):
    key, label = "appstack-worker-preload", "appstack workers, preload"
    app_options = "preload = on\n"


class AppstackDirectThreads(AppstackDirect):
    key, label = "appstack-worker-threads", f"appstack workers, threads = {IO_THREADS}"
    supervisor_options = f"threads = {IO_THREADS}\n"


class AppstackFront(_Appstack):
    key, label = "appstack", "appstack-proxy+appstackd"
    programs = ("appstackd", "appstack-worker", "appstack-proxy")

    def start(self):
        ini = self.ini(f"unix:{self.dir}/app.sock", proxy=True)
        self.start_master(ini)
        self.start_proxy(ini)


class AppstackStatic(_Appstack):
    """The proxy alone: static files need no workers."""
    key, label = "appstack-proxy", "appstack-proxy"
    programs = ("appstack-proxy",)

    def start(self):
        self.start_proxy(self.ini(None, proxy=True))


# ---- gunicorn and uWSGI -----------------------------------------------------

def gunicorn_argv(app, workers, bind, d):
    # gunicorn's deployment docs: sync workers behind a buffering proxy,
    # heartbeat files on tmpfs.
    return [PYTHON, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
            "--bind", bind, "--chdir", app.chdir, "--worker-tmp-dir", "/dev/shm",
            "--backlog", "2048", "--timeout", "30", "--graceful-timeout", "30",
            "--log-level", "warning", "--pid", f"{d}/gunicorn.pid", *EXTRA["gunicorn"],
            app.module]


def uwsgi_argv(app, workers, socket_opt, d):
    # The options uWSGI's docs and its users recommend for production:
    # strict parsing, a master, clean shutdown on TERM, fail if the app does
    # not load, and no per-request log when a proxy logs access already.
    return ["uwsgi", "--plugin", UWSGI_PLUGIN, "--strict", "--master",
            "--processes", str(workers), *socket_opt,
            "--chdir", app.chdir, "--module", app.module,
            "--enable-threads", "--single-interpreter", "--need-app", "--die-on-term",
            "--vacuum", "--disable-logging", "--harakiri", "30", "--listen", "1024",
            "--pidfile", f"{d}/uwsgi.pid", *EXTRA["uwsgi"]]


# Between cases nothing is in flight, so the peers get their quick-stop
# signal: gunicorn's graceful TERM waits for every idle sync worker's select()
# timeout, and uWSGI's TERM for a Python shutdown in each worker.
GUNICORN_STOP = UWSGI_STOP = signal.SIGINT


class GunicornDirect(Stack):
    key, label = "gunicorn", "gunicorn sync"

    def start(self):
        self.master = self.spawn("gunicorn", gunicorn_argv(
            self.app, self.workers, f"127.0.0.1:{self.port}", self.dir),
            stop_signal=GUNICORN_STOP, env=python_env(self.app))


class GunicornGthread(GunicornDirect):
    """gunicorn's threaded worker, the documented choice for I/O-bound apps."""
    key, label = "gunicorn-gthread", f"gunicorn gthread, {IO_THREADS} threads"

    def start(self):
        argv = gunicorn_argv(self.app, self.workers, f"127.0.0.1:{self.port}", self.dir)
        argv[argv.index("sync")] = "gthread"
        argv[-1:-1] = ["--threads", str(IO_THREADS)]
        self.master = self.spawn("gunicorn", argv, stop_signal=GUNICORN_STOP, env=python_env(self.app))


class UwsgiDirect(Stack):
    key, label = "uwsgi", "uWSGI http-socket"

    def start(self):
        self.master = self.spawn("uwsgi", uwsgi_argv(
            self.app, self.workers, ["--http-socket", f"127.0.0.1:{self.port}"], self.dir),
            stop_signal=UWSGI_STOP, env=python_env(self.app))


class UwsgiThreads(UwsgiDirect):
    key, label = "uwsgi-threads", f"uWSGI http-socket, {IO_THREADS} threads"

    def start(self):
        argv = uwsgi_argv(self.app, self.workers, ["--http-socket", f"127.0.0.1:{self.port}"], self.dir)
        self.master = self.spawn("uwsgi", argv + ["--threads", str(IO_THREADS)], stop_signal=UWSGI_STOP,
                                 env=python_env(self.app))


# ---- nginx fronts -----------------------------------------------------------

NGINX_CONF = """
user root;
daemon off;
worker_processes auto;
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name _;
        location /static/ {{
            alias {static}/;
            expires 30d;
        }}
        location / {{
{app}
        }}
    }}
}}
"""

PROXY_TO_GUNICORN = """
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_redirect off;
            proxy_pass http://unix:{sock}:;
"""

PASS_TO_UWSGI = """
            include /etc/nginx/uwsgi_params;
            uwsgi_pass unix:{sock};
"""


class _Nginx(Stack):
    tls = False
    gzip = False            # gzip on, at GZIP_LEVEL
    one_process = False     # as many front processes as appstack-proxy (--front-processes, default one)

    def start_nginx(self, app_block):
        os.makedirs(os.path.join(self.dir, "tmp"))
        static = (self.app.static_dir or os.path.join(self.dir, "nostatic")).rstrip("/")
        text = NGINX_CONF.format(d=self.dir, port=self.port, static=static, app=app_block)
        if self.gzip:
            text = text.replace("    sendfile on;\n", "    sendfile on;\n" + NGINX_GZIP.format(level=GZIP_LEVEL))
        if self.one_process or self.tls:
            text = text.replace("worker_processes auto;", f"worker_processes {self.ctx.front_processes};")
        if self.tls:
            # The same certificate and protocol as appstack's TLS rows, and
            # as many front processes (above). keepalive_requests: nginx
            # closes a connection after 1000 requests by default (HTTP/2 too,
            # since 1.19.7), which h2load does not survive (it reconnects
            # nothing: the rest of the run is errors); appstack-proxy has no
            # such limit, so nginx gets none either.
            cert, key = self.ctx.tls()
            text = text.replace(f"listen 127.0.0.1:{self.port} backlog=4096;",
                                f"listen 127.0.0.1:{self.port} ssl http2 backlog=4096;\n"
                                f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
                                f"        ssl_protocols TLSv1.3;\n        keepalive_requests 1000000000;")
        conf = self.write("nginx.conf", text)
        self.proxy = self.spawn("nginx", ["nginx", "-p", self.dir, "-c", conf,
                                          "-e", f"{self.dir}/nginx-error.log"])


class NginxGunicorn(_Nginx):
    key, label = "nginx+gunicorn", "nginx+gunicorn"

    def start(self):
        sock = f"{self.dir}/gunicorn.sock"
        self.master = self.spawn("gunicorn", gunicorn_argv(
            self.app, self.workers, "unix:" + sock, self.dir),
            stop_signal=GUNICORN_STOP, env=python_env(self.app))
        self.start_nginx(PROXY_TO_GUNICORN.format(sock=sock))


class NginxUwsgi(_Nginx):
    key, label = "nginx+uwsgi", "nginx+uWSGI"

    def start(self):
        sock = f"{self.dir}/uwsgi.sock"
        self.master = self.spawn("uwsgi", uwsgi_argv(
            self.app, self.workers, ["--socket", sock], self.dir),
            stop_signal=UWSGI_STOP, env=python_env(self.app))
        self.start_nginx(PASS_TO_UWSGI.format(sock=sock))


class NginxStatic(_Nginx):
    key, label = "nginx", "nginx"

    def start(self):
        self.start_nginx("            return 404;")


# ---- virtual hosts ----------------------------------------------------------

VHOSTS = 20


class AppstackOneSite(AppstackFront):
    """The reference of the vhosts row: the same front without [site]
    sections (counted as the peer, so the row's ratio is 20 sites / none)."""
    key, label = "appstack-nosites", "appstack-proxy, no [site]"
    appstack = False


class AppstackVhosts(AppstackFront):
    """The same front with 20 [site]s (exact names and wildcards) and no
    default site: every request is routed by its Host ("127.0.0.1:PORT",
    what wrk sends), to the site that names 127.0.0.1; a miss would be 421."""
    key, label = "appstack-20sites", f"appstack-proxy, {VHOSTS} [site]s"

    def ini(self, supervisor_listen, proxy=False):
        path = super().ini(supervisor_listen)
        a = self.app
        text = f"[proxy]\nlisten = 127.0.0.1:{self.port}\nworkers = {self.ctx.front_processes}\n"
        for i in range(1, VHOSTS + 1):
            names = (f"site{i:02d}.example.com www.site{i:02d}.example.com *.site{i:02d}.example.org"
                     if i != VHOSTS // 2 else "127.0.0.1 localhost")
            text += f"\n[site s{i:02d}]\nserver_name = {names}\nupstream = unix:{self.dir}/app.sock\n"
            if a.static_dir:
                text += f"\n[location /static/]\nalias = {a.static_dir.rstrip('/')}/\nexpires = 30d\n"
        with open(path, "a") as f:
            f.write(text)
        return path


# ---- metrics ----------------------------------------------------------------

class AppstackNoMetrics(AppstackFront):
    """The reference of the metrics row: the same front without metrics
    (counted as the peer, so the row's ratio is metrics on / off)."""
    key, label = "appstack-nometrics", "appstack-proxy+appstackd, no metrics"
    appstack = False


class AppstackMetrics(AppstackFront):
    """metrics = ADDR in [supervisor] and [proxy], both scraped every
    second while the row runs (Prometheus scrapes every 15 s by default:
    this is the harder case)."""
    key, label = "appstack-metrics", "appstack-proxy+appstackd, metrics scraped every 1 s"
    SCRAPE_EVERY = 1.0

    def ini(self, supervisor_listen, proxy=False):
        path = super().ini(supervisor_listen, proxy)
        self.metrics_ports = (net.free_port(), net.free_port())
        with open(path) as f:
            text = f.read()
        text = text.replace(f"control = {self.dir}/control.sock\n",
                            f"control = {self.dir}/control.sock\nmetrics = 127.0.0.1:{self.metrics_ports[0]}\n")
        text = text.replace(f"upstream = unix:{self.dir}/app.sock\n",
                            f"upstream = unix:{self.dir}/app.sock\nmetrics = 127.0.0.1:{self.metrics_ports[1]}\n")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self):
        super().start()
        self.scraping = threading.Event()
        self.scraper = threading.Thread(target=self.scrape, daemon=True)
        self.scraper.start()

    def scrape(self):
        while not self.scraping.wait(self.SCRAPE_EVERY):
            for port in self.metrics_ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        r.read()
                except OSError:
                    pass    # not up yet, or stopping

    def stop(self):
        self.scraping.set()
        self.scraper.join()
        super().stop()


# ---- several hosts ------------------------------------------------------------
# One proxy and three upstream hosts, each in a network namespace of its own
# (netns.py), against the same proxy with one local upstream of as many
# workers, both over TCP: what balancing over hosts costs.

HOSTS = 3
LISTEN_SHIM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chaoslib",
                           "listenexec.py")


class AppstackLocalTcp(AppstackFront):
    """The reference of the hosts row: one appstackd on 127.0.0.1 over TCP
    (counted as the peer, so the row's ratio is hosts / local)."""
    key, label = "appstack-1local", "appstack-proxy, 1 local upstream"
    appstack = False

    def start(self):
        up = f"127.0.0.1:{net.free_port()}"
        ini = self.ini(up, proxy=True)
        with open(ini) as f:
            text = f.read().replace(f"upstream = unix:{self.dir}/app.sock", f"upstream = {up}")
        with open(ini, "w") as f:
            f.write(text)
        self.start_master(ini)
        self.start_proxy(ini)


class AppstackHosts(AppstackFront):
    """The proxy in a front namespace (its listening socket made here, on
    loopback, and handed over as systemd would), each host's appstackd in a
    namespace of its own with a third of the workers."""
    key, label = "appstack-3hosts", f"appstack-proxy, {HOSTS} hosts"

    hosts = lsock = None

    def start(self):
        self.hosts = netns.Hosts(HOSTS)
        per_host = max(1, self.workers // HOSTS)
        ups = []
        self.masters = []
        for i in range(1, HOSTS + 1):
            addr = f"{netns.Hosts.addr(i)}:8000"
            ups.append(addr)
            ini = self.write(f"host{i}.ini", open(self.ini(addr)).read()
                             .replace(f"workers = {self.workers}\n", f"workers = {per_host}\n")
                             .replace("control.sock", f"control{i}.sock")
                             + f"forwarded_allow_ips = {netns.NET}.0.0/16\n")
            self.masters.append(self.spawn(f"appstackd{i}", netns.Hosts.exec_in(self.hosts.hosts[i - 1])
                                           + [self.ctx.prog("appstackd"), "-c", ini],
                                           stop_signal=signal.SIGINT, env=python_env(self.app)))
        self.master = self.masters[0]
        text = f"[proxy]\nlisten = 127.0.0.1:{self.port}\n" + "".join(f"upstream = {u}\n" for u in ups)
        ini = self.write("proxy.ini", text)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(4096)
        fd = self.lsock.fileno()
        self.proxy = self.spawn("appstack-proxy", ["/usr/bin/python3", LISTEN_SHIM, f"{fd}:http", "--"]
                                + netns.Hosts.exec_in(self.hosts.front) + [self.ctx.prog("appstack-proxy"), "-c", ini],
                                pass_fds=(fd,))

    def worker_pids(self):
        return [p for m in self.masters for p in procs.children(m.pid)]

    def stop(self):
        try:
            super().stop()
        finally:
            if self.lsock:
                self.lsock.close()
            if self.hosts:
                self.hosts.close()


# ---- HTTPS and HTTP/2 -------------------------------------------------------
# As many front processes on each side (--front-processes, default one), TLS 1.3,
# the same ECDSA P-256 certificate; HTTP/2 by ALPN on both.

class _AppstackTls:
    scheme = "https"

    def ini(self, supervisor_listen, proxy=False):
        path = super().ini(supervisor_listen, proxy)
        if proxy:
            cert, key = self.ctx.tls()
            with open(path) as f:
                text = f.read()
            text = text.replace(f"listen = 127.0.0.1:{self.port}\n",
                                f"listen = 127.0.0.1:{self.port} ssl\ncertificate = {cert}\n"
                                f"certificate_key = {key}\ntls_protocols = TLSv1.3\n")
            with open(path, "w") as f:
                f.write(text)
        return path


class AppstackFrontTls(_AppstackTls, AppstackFront):
    key, label = "appstack-tls", "appstack-proxy+appstackd, TLS"


class AppstackStaticTls(_AppstackTls, AppstackStatic):
    key, label = "appstack-proxy-tls", "appstack-proxy, TLS"


class NginxGunicornTls(NginxGunicorn):
    key, label, scheme, tls = "nginx-tls+gunicorn", "nginx (TLS)+gunicorn", "https", True


class NginxUwsgiTls(NginxUwsgi):
    key, label, scheme, tls = "nginx-tls+uwsgi", "nginx (TLS)+uWSGI", "https", True


class NginxStaticTls(NginxStatic):
    key, label, scheme, tls = "nginx-tls", "nginx, TLS", "https", True


# ---- compression ------------------------------------------------------------
# gzip on the fly at the same level on both sides, one front process each
# (compression is CPU work: nginx's "auto" would use every core).

GZIP_LEVEL = 5
GZIP_TYPES = "text/html text/css text/plain text/javascript application/javascript application/json image/svg+xml"
NGINX_GZIP = """    gzip on;
    gzip_comp_level {level};
    gzip_min_length 256;
    gzip_vary on;
    gzip_proxied any;
    gzip_types """ + GZIP_TYPES.replace("text/html ", "") + """;
"""
APPSTACK_GZIP = f"gzip = on\ngzip_comp_level = {GZIP_LEVEL}\n"


class AppstackFrontGzip(AppstackFront):
    key, label, proxy_extra = "appstack-gzip", "appstack-proxy+appstackd, gzip", APPSTACK_GZIP


class AppstackStaticGzip(AppstackStatic):
    key, label, proxy_extra = "appstack-proxy-gzip", "appstack-proxy, gzip", APPSTACK_GZIP


class NginxGunicornGzip(NginxGunicorn):
    key, label, gzip, one_process = "nginx-gzip+gunicorn", "nginx (gzip)+gunicorn", True, True


class NginxUwsgiGzip(NginxUwsgi):
    key, label, gzip, one_process = "nginx-gzip+uwsgi", "nginx (gzip)+uWSGI", True, True


class NginxStaticGzip(NginxStatic):
    key, label, gzip, one_process = "nginx-gzip", "nginx, gzip", True, True


# ---- WebSocket ----------------------------------------------------------------
# The same upstream (bench/wsload.c echo) behind each front, one front
# process each.

class _WsEcho:
    def start_echo(self):
        self.echo_port = net.free_port()
        self.echo = self.spawn("wsload-echo", [ws.binary(self.ctx.workdir), "echo", str(self.echo_port)])

    def wait_ready(self, path="/", timeout=60.0):
        net.wait_port(self.port, self.procs, timeout=timeout)


class AppstackWs(_WsEcho, AppstackStatic):
    key, label = "appstack-proxy-ws", "appstack-proxy"

    def start(self):
        self.start_echo()
        net.wait_port(self.echo_port, self.procs, timeout=20)
        path = self.write("appstack.ini", f"[proxy]\nlisten = 127.0.0.1:{self.port}\n"
                                          f"workers = {self.ctx.front_processes}\n"
                                          f"upstream = 127.0.0.1:{self.echo_port}\n")
        self.start_proxy(path)


NGINX_WS = """
            proxy_pass http://127.0.0.1:{port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
"""


class NginxWs(_WsEcho, NginxStatic):
    key, label, one_process = "nginx-ws", "nginx", True

    def start(self):
        self.start_echo()
        net.wait_port(self.echo_port, self.procs, timeout=20)
        self.start_nginx(NGINX_WS.format(port=self.echo_port))


GZIP_FRONT = (AppstackFrontGzip, NginxGunicornGzip, NginxUwsgiGzip)
GZIP_STATIC = (AppstackStaticGzip, NginxStaticGzip)
WS = (AppstackWs, NginxWs)
DIRECT = (AppstackDirect, GunicornDirect, UwsgiDirect)
# An I/O-bound app with threads in every worker.
THREADED = (AppstackDirectThreads, GunicornGthread, UwsgiThreads)
# Memory of a pool: appstack with and without preload against the peers'
# defaults (gunicorn imports the app in each worker, uWSGI forks them from
# its master after the import).
MEMORY = (AppstackDirectPreload, AppstackDirect, GunicornDirect, UwsgiDirect)
VHOST = (AppstackVhosts, AppstackOneSite)
METRICS = (AppstackMetrics, AppstackNoMetrics)
HOSTS_FRONT = (AppstackHosts, AppstackLocalTcp)
FRONT = (AppstackFront, NginxGunicorn, NginxUwsgi)
STATIC = (AppstackStatic, NginxStatic)
TLS_FRONT = (AppstackFrontTls, NginxGunicornTls, NginxUwsgiTls)
TLS_STATIC = (AppstackStaticTls, NginxStaticTls)


def available(cls, builddir):
    """Why CLS cannot run here, or None when it can."""
    if cls is AppstackHosts and netns.available():
        return f"network namespaces: {netns.available()}"
    for name in cls.programs:
        path = os.path.join(builddir, name)
        if not os.access(path, os.X_OK):
            return f"{path} is not built"
    return None
