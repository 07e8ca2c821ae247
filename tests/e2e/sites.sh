# Sourced by tests/e2e/run: several apps on one host. Two Django sites (two
# copies of the example site) and a Flask site, each an instance of the
# shipped appstack@.socket / appstack@.service templates with its own
# /etc/appstack/NAME.ini and user, behind one appstack-proxy with a [site]
# per app; then a reload of one and a crash of another under load, which
# the others must not notice.

SITES="blog shop flask"

# Before boot: the apps, their users and their files.
install_sites() {
    local name
    for name in blog shop; do
        cp -r "$root/srv/mysite" "$root/srv/$name"
        sed -i "s/^VERSION = .*/VERSION = \"$name 1\"/" "$root/srv/$name/pages/e2e_views.py"
        cat >"$root/etc/appstack/$name.ini" <<EOF
; appstack@$name: no listen or control lines, the instance's defaults apply
[app]
module = mysite.wsgi:application
chdir = /srv/$name
env = DJANGO_SETTINGS_MODULE=mysite.settings
env = MYSITE_ALLOWED_HOSTS=$name.example
env = MYSITE_STATIC_ROOT=/srv/$name/static_root
env = MYSITE_DB=/srv/$name/db.sqlite3

[supervisor]
workers = 2
timeout = 60
graceful_timeout = 10
user = $name
EOF
    done
    mkdir -p "$root/srv/flask"
    cat >"$root/srv/flask/flaskapp.py" <<'EOF'
import os
import pwd

from flask import Flask

app = Flask(__name__)


@app.route("/e2e/version")
def version():
    return "flask 1 %s\n" % pwd.getpwuid(os.getuid()).pw_name
EOF
    cat >"$root/etc/appstack/flask.ini" <<'EOF'
[app]
module = flaskapp:app
chdir = /srv/flask

[supervisor]
workers = 2
graceful_timeout = 10
user = flask
EOF
    for name in $SITES; do
        chroot "$root" useradd --system --no-create-home --shell /usr/sbin/nologin "$name" || return 1
    done
}

# The proxy's file once the single app is stopped: a [site] per app and no
# default site.
proxy_for_sites() {
    cat <<'EOF'
[proxy]
listen = 0.0.0.0:8080
access_log = on

[site blog]
server_name = blog.example
upstream = unix:/run/appstack/blog/app.sock

[location /static/]
alias = /srv/blog/static_root/

[site shop]
server_name = shop.example www.shop.example
upstream = unix:/run/appstack/shop/app.sock

[site flask]
server_name = flask.example
upstream = unix:/run/appstack/flask/app.sock
EOF
}

site_body() { inside curl -sS --max-time 30 -H "Host: $1" "http://127.0.0.1:8080$2"; }
site_http() { inside curl -sS -o /dev/null -w '%{http_code}' --max-time 30 -H "Host: $1" "http://127.0.0.1:8080$2"; }

# Requests to HOST every 20 ms until /run/e2e-stop exists: "curl-exit code".
site_loop() {
    inside sh -c 'while [ ! -e /run/e2e-stop ]; do
        code=$(curl -s -o /dev/null -w "%{http_code}" --max-time 30 -H "Host: '"$1"'" http://127.0.0.1:8080/e2e/version)
        echo "$? $code"; sleep 0.02; done' >"$2"
}

# Pids of the appstack-worker processes of UNIT's cgroup.
unit_workers() {
    local cg
    cg=$(prop "$1" ControlGroup)
    inside sh -c 'for f in /sys/fs/cgroup/unified'"$cg"'/cgroup.procs /sys/fs/cgroup'"$cg"'/cgroup.procs; do
            [ -r "$f" ] || continue
            for p in $(cat "$f"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = appstack-worker ] && echo $p; done
            break; done' | sort | tr '\n' ' '
}

sites_ready() {
    local name
    for name in $SITES; do
        active_running "appstack@$name.service" || return 1
    done
}

step_sites_start() {
    local name out
    T=120 inside sh -c 'for s in blog shop; do cd /srv/$s && python3 manage.py collectstatic --noinput -v0 &&
        python3 manage.py migrate --noinput -v0 && chown $s /srv/$s/db.sqlite3 || exit 1; done' ||
        { fail "sites: collectstatic/migrate"; return 1; }
    out=$(inside systemd-analyze verify --man=no appstack@blog.service appstack@blog.socket 2>&1)
    if [ -z "$out" ]; then
        pass "systemd-analyze verify appstack@blog.service appstack@blog.socket: clean"
    else
        fail "systemd-analyze verify of the template instances" "$out"
    fi
    proxy_for_sites >"$root/etc/appstack/appstack.ini"
    inside systemctl enable --now appstack@blog.socket appstack@shop.socket appstack@flask.socket >/dev/null 2>&1 ||
        { fail "systemctl enable --now appstack@{blog,shop,flask}.socket"; return 1; }
    inside systemctl restart appstack-proxy.socket appstack-proxy.service ||
        { fail "restart appstack-proxy with the [site]s"; return 1; }

    local ok=1 why=
    for name in blog shop; do
        out=$(site_body "$name.example" /e2e/version)
        [ "$out" = "$name 1" ] || { ok=0; why="$why $name.example: '$out';"; }
    done
    out=$(site_body flask.example /e2e/version)
    [ "$out" = "flask 1 flask" ] || { ok=0; why="$why flask.example: '$out';"; }
    [ "$(site_http nowhere.example /)" = 421 ] || { ok=0; why="$why an unknown Host: $(site_http nowhere.example /);"; }
    local css
    css=$(site_body blog.example / | grep -o 'href="[^"]*\.css"' | head -n1 | cut -d'"' -f2)
    [ -n "$css" ] && [ "$(site_http blog.example "$css")" = 200 ] || { ok=0; why="$why blog's $css;"; }
    if [ $ok = 1 ]; then
        pass "one proxy, three apps by Host (two Django, one Flask), blog's static files from its [site]; 421 for another Host"
    else
        fail "three apps behind one proxy" "$why"
    fi
    if until_ok 60 sites_ready; then
        pass "appstack@blog, @shop, @flask active (running) after READY=1"
    else
        fail "instances active" "$(for n in $SITES; do echo -n "$n: $(prop appstack@$n.service ActiveState) "; done)"
    fi

    # Each its own user, its own sockets under /run/appstack/NAME.
    ok=1; why=
    for name in $SITES; do
        local pids user
        pids=$(unit_workers "appstack@$name.service")
        [ -n "$pids" ] || { ok=0; why="$why no worker in appstack@$name;"; continue; }
        for p in $pids; do
            user=$(inside ps -o user= -p "$p" | tr -d ' ')
            [ "$user" = "$name" ] || { ok=0; why="$why a worker of $name runs as '$user';"; }
        done
        inside test -S "/run/appstack/$name/control.sock" || { ok=0; why="$why no /run/appstack/$name/control.sock;"; }
    done
    if [ $ok = 1 ]; then
        pass "each instance's workers run as its own user, control sockets in /run/appstack/NAME"
    else
        fail "instances apart" "$why"
    fi

    out=$(inside supctl status --all --json)
    if [ $? = 0 ] && /usr/bin/python3 -c '
import json, sys
inst = {i["name"]: i for i in json.load(sys.stdin)["instances"]}
assert set(inst) == {"blog", "shop", "flask"}, sorted(inst)
assert all(i["running"] and i["status"]["workers_ready"] == 2 for i in inst.values()), inst
assert inst["blog"]["unit"] == "appstack@blog.service"
' <<<"$out" 2>"$work/py.err"; then
        pass "supctl status --all: blog, shop and flask, 2 workers each"
    else
        fail "supctl status --all" "$(tail -n1 "$work/py.err")"
    fi
}

step_sites_reload_one() {
    local shop_pid shop_workers log=$work/shop-loop.log
    shop_pid=$(prop appstack@shop.service MainPID)
    shop_workers=$(unit_workers appstack@shop.service)
    sed -i 's/^VERSION = .*/VERSION = "blog 2"/' "$root/srv/blog/pages/e2e_views.py"
    inside rm -f /run/e2e-stop
    T=120 site_loop shop.example "$log" &
    local loop=$! rc now
    sleep 1
    inside systemctl reload appstack@blog.service; rc=$?
    sleep 1
    inside touch /run/e2e-stop
    wait $loop
    now=$(site_body blog.example /e2e/version)
    if [ $rc = 0 ] && [ "$now" = "blog 2" ] && [ "$(site_body shop.example /e2e/version)" = "shop 1" ] &&
        [ "$(prop appstack@shop.service MainPID)" = "$shop_pid" ] &&
        [ "$(unit_workers appstack@shop.service)" = "$shop_workers" ] &&
        [ "$(grep -vc '^0 200$' "$log")" = 0 ] && [ "$(wc -l <"$log")" -gt 10 ]; then
        pass "systemctl reload appstack@blog: blog's new code answers; shop's master and workers untouched, $(wc -l <"$log") shop requests all 200"
    else
        fail "reload one instance" "exit $rc, blog '$now', shop pid $shop_pid -> $(prop appstack@shop.service MainPID), workers '$shop_workers' -> '$(unit_workers appstack@shop.service)', shop loop: $(sort "$log" | uniq -c | tr '\n' ' ')"
    fi
}

shop_restarted() {
    local p
    p=$(prop appstack@shop.service MainPID)
    [ "${p:-0}" -gt 0 ] && [ "$p" != "$old_shop" ] && active_running appstack@shop.service
}

step_sites_crash_one() {
    local blog_pid blog_workers log=$work/blog-loop.log
    blog_pid=$(prop appstack@blog.service MainPID)
    blog_workers=$(unit_workers appstack@blog.service)
    old_shop=$(prop appstack@shop.service MainPID)
    inside rm -f /run/e2e-stop
    T=150 site_loop blog.example "$log" &
    local loop=$!
    sleep 1
    inside kill -9 "$old_shop"
    local back=0
    until_ok 60 shop_restarted && back=1
    sleep 1
    inside touch /run/e2e-stop
    wait $loop
    if [ $back = 1 ] && [ "$(site_body shop.example /e2e/version)" = "shop 1" ]; then
        pass "kill -9 appstack@shop's master: systemd restarts it and shop serves again"
    else
        fail "crashed instance comes back" "MainPID $old_shop -> $(prop appstack@shop.service MainPID), $(prop appstack@shop.service ActiveState)"
    fi
    if [ "$(prop appstack@blog.service MainPID)" = "$blog_pid" ] &&
        [ "$(unit_workers appstack@blog.service)" = "$blog_workers" ] &&
        [ "$(grep -vc '^0 200$' "$log")" = 0 ] && [ "$(wc -l <"$log")" -gt 10 ]; then
        pass "... meanwhile blog's master and workers untouched, $(wc -l <"$log") blog requests all 200"
    else
        fail "a crash of one instance touches another" "blog loop: $(sort "$log" | uniq -c | tr '\n' ' ')"
    fi
}

step_sites_logs() {
    inside journalctl --sync 2>/dev/null
    local json
    json=$(inside journalctl --no-pager -o json -u appstack-proxy.service APPSTACK_SITE=flask)
    if /usr/bin/python3 -c '
import json, sys
entries = [json.loads(l) for l in sys.stdin if l.strip()]
assert entries, "no access entry with APPSTACK_SITE=flask"
assert all(e["APPSTACK_UPSTREAM"] == "unix:/run/appstack/flask/app.sock" for e in entries)
' <<<"$json" 2>"$work/py.err" && [ -n "$(inside journalctl --no-pager -q -u appstack@flask.service -n 1)" ]; then
        pass "journalctl -u appstack-proxy APPSTACK_SITE=flask; journalctl -u appstack@flask has the instance's log"
    else
        fail "logs per site and per instance" "$(tail -n1 "$work/py.err")"
    fi
}

step_sites_stop() {
    inside systemctl stop appstack-proxy.service appstack@blog.service appstack@shop.service appstack@flask.service
    local name out=
    for name in $SITES; do
        out="$out $name: $(prop appstack@$name.service Result)"
    done
    if [ "$out" = " blog: success shop: success flask: success" ] && ! inside pgrep -x appstack-worker >/dev/null; then
        pass "systemctl stop of the three instances: clean, no worker left"
    else
        fail "clean stop of the instances" "$out"
    fi
}

step_sites() {
    step_sites_start || return
    step_sites_reload_one
    step_sites_crash_one
    step_sites_logs
    step_sites_stop
}
