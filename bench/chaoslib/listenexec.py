"""Exec shim: hands a program listening sockets the way systemd does.

    listenexec.py FD:NAME [FD:NAME ...] -- PROGRAM ARGS...

Moves each FD to 3, 4, ... in order, sets LISTEN_FDS, LISTEN_FDNAMES and
LISTEN_PID (this process's pid, which the program keeps across exec), then
execs PROGRAM. The chaos script runs every socket-activated program through
it, so the sockets it holds outlive each restart, as a .socket unit's do."""
import fcntl
import os
import sys

SD_LISTEN_FDS_START = 3


def main(argv):
    if "--" not in argv:
        sys.exit("usage: listenexec.py FD:NAME... -- PROGRAM ARGS...")
    sep = argv.index("--")
    specs = [a.split(":", 1) for a in argv[:sep]]
    program = argv[sep + 1:]
    fds = [int(fd) for fd, _ in specs]
    # Park every fd far above the target range first, so that no dup2
    # clobbers a source that has not been moved yet.
    parked = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 256) for fd in fds]
    for i, fd in enumerate(parked):
        os.dup2(fd, SD_LISTEN_FDS_START + i, inheritable=True)
    for fd in fds:
        if not SD_LISTEN_FDS_START <= fd < SD_LISTEN_FDS_START + len(fds):
            os.close(fd)
    env = dict(os.environ, LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()),
               LISTEN_FDNAMES=":".join(name for _, name in specs))
    os.execvpe(program[0], program, env)


if __name__ == "__main__":
    main(sys.argv[1:])
