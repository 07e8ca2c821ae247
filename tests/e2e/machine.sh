# Shared by the end-to-end tests (run, package): a booted Debian 12
# machine under systemd-nspawn, on an overlay of the cached rootfs
# (mkrootfs), driven from the host through nsenter; PASS/FAIL lines and the
# "N passed, N failed" summary; the time limit; the cleanup that always
# powers the machine off and unmounts, also on failure or timeout.
#
# The sourcing script sets "here" (tests/e2e) and "keep" (1: keep the work
# directory), calls machine_prepare, fills $root, then calls boot.

limit=${APPSTACK_E2E_TIMEOUT:-900}
keep=${keep:-0}
name=appstack-e2e-$$
work=
root=
nspawn_pid=
leader=
watchdog=
passed=0
failed=0

say() { echo "e2e: $*"; }
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $1${2:+: $2}"
}

# ---------------------------------------------------------------- machine

cleanup() {
    trap - EXIT INT TERM
    # The timer subshell and its sleep, which would hold our stdout open.
    [ -n "$watchdog" ] && kill $(pgrep -P "$watchdog") "$watchdog" 2>/dev/null
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # TERM makes nspawn ask the container's systemd for a clean poweroff.
        kill -TERM "$nspawn_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    if [ -n "$root" ] && mountpoint -q "$root"; then
        umount "$root" 2>/dev/null || umount -l "$root"
    fi
    rm -rf "/run/systemd/nspawn/propagate/$name" 2>/dev/null
    if [ -n "$work" ]; then
        if [ "$keep" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
    fi
}

finish() {
    cleanup
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
    exit $?
}

on_signal() {
    fail "run" "interrupted (time limit ${limit}s or signal)"
    finish
}

# Runs a command inside the booted machine, bounded in time.
inside() {
    local t=${T:-60}
    timeout -k 5 "$t" nsenter -t "$leader" -a \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}

# Polls COMMAND... until it succeeds or SECONDS pass.
until_ok() {
    local seconds=$1; shift
    local end=$((SECONDS + seconds))
    while [ $SECONDS -lt $end ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

prerequisites() {
    local missing=
    [ "$(id -u)" -eq 0 ] || { fail "prerequisites" "must run as root"; finish; }
    for tool in debootstrap systemd-nspawn nsenter mountpoint; do
        command -v "$tool" >/dev/null || missing="$missing $tool"
    done
    [ -z "$missing" ] || { fail "prerequisites" "missing:$missing (apt-get install debootstrap systemd-container util-linux)"; finish; }
}

# The build to install: --builddir, or one of our own. Installed with the
# paths the machine uses whatever it was configured with: the programs find
# each other next to themselves, and the units are regenerated for them.
boot() {
    systemd-nspawn -b -D "$root" --machine="$name" --register=no --keep-unit \
        --private-network --console=passive >"$work/console.log" 2>&1 &
    nspawn_pid=$!
    local end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do
        leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n1)
        [ -n "$leader" ] && break
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.2
    done
    [ -n "$leader" ] || { tail -n 20 "$work/console.log"; return 1; }
    # The manager's private socket appears a moment after PID 1 starts.
    until_ok 30 inside systemctl is-system-running
    [ $? = 0 ] || until_ok 30 inside test -S /run/systemd/private
    local state
    state=$(T=90 inside systemctl is-system-running --wait)
    [ "$state" = running ] || {
        echo "system state '$state'; failed units:"
        inside systemctl --failed --no-legend
        return 1
    }
}

# Installs the traps and the time limit, checks the tools, makes the work
# directory and mounts a fresh overlay of the cached rootfs on $root.
machine_prepare() {
    trap finish EXIT
    trap on_signal INT TERM
    { sleep "$limit"; kill -TERM $$; } </dev/null >/dev/null 2>&1 &
    watchdog=$!

    prerequisites
    work=$(mktemp -d /tmp/appstack-e2e.XXXXXX)
    root=$work/root

    local rootfs
    rootfs=$("$here/mkrootfs") || { fail "rootfs" "debootstrap failed"; finish; }
    pass "Debian 12 rootfs ($rootfs)"

    mkdir -p "$work/upper" "$work/ovl" "$root"
    mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$work/upper,workdir=$work/ovl" "$root" ||
        { fail "overlay mount"; finish; }
}

# ---------------------------------------------------------------- helpers

http() { inside curl -sS -o /dev/null -w '%{http_code}' --max-time 30 "http://127.0.0.1:8080$1"; }
body() { inside curl -sS --max-time 30 "http://127.0.0.1:8080$1"; }
prop() { inside systemctl show -P "$2" "$1"; }
active_running() { [ "$(prop "$1" ActiveState)/$(prop "$1" SubState)" = active/running ]; }

