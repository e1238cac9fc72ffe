"""The `pulumi` process when a warm stand-in server runs (FAKE_PULUMI_ZYGOTE, see zygote.py): it
hands its call to the server, forwards the signals it receives to the command, and exits as the
command did (dying by the same signal if the command did). Without a server it becomes the
stand-in itself. Started with `python -S`: only built-in modules, for a quick start.

`shim.py --mlserve SOCKET ARGS` does the same for `mlserve ARGS` with the warm mlserve server at
SOCKET (tests/fake_pulumi/fixture.py `mlserve_command`); without it, `python -m mlserve ARGS`."""

import _signal
import _socket
import marshal
import os
import sys

# What a `kill`, a terminal or a process-group kill may send. SIGKILL cannot be forwarded: the
# server sees this process's end of the connection close and kills the command.
FORWARDED = (_signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2,
             _signal.SIGALRM, _signal.SIGTERM)  # fmt: skip
PYTHON_IGNORES = (_signal.SIGPIPE, _signal.SIGXFSZ)  # ignored by Python itself at start-up


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--mlserve"]:  # `shim.py --mlserve SOCKET ARGS`: a warm `mlserve ARGS`
        path, args, fresh = args[1], args[2:], ["-m", "mlserve"]
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        path, fresh = os.environ["FAKE_PULUMI_ZYGOTE"], [os.path.join(here, "fake_pulumi.py")]
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        conn.connect(path)
    except OSError:  # no server: the command starts afresh in this process
        os.execv(sys.executable, [sys.executable, *fresh, *args])
    mask = sorted(_signal.pthread_sigmask(_signal.SIG_BLOCK, []))
    ignored = [n for n in range(1, _signal.NSIG)
               if n not in PYTHON_IGNORES and _getsignal(n) == _signal.SIG_IGN]  # fmt: skip
    stdio = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            continue
        stdio.append(fd)
    request = {
        "argv": [os.fsencode(a) for a in args],
        "env": dict(os.environb),
        "cwd": os.getcwdb(),
        "mask": mask,
        "ignored": ignored,
        "stdio": stdio,
    }

    def forward(signum: int, frame: object) -> None:
        conn.send(bytes([signum]))

    # Held until the request is out: a signal that comes earlier is forwarded right after it.
    forwarded = [n for n in FORWARDED if n not in ignored]
    _signal.pthread_sigmask(_signal.SIG_BLOCK, forwarded)
    for signum in forwarded:
        _signal.signal(signum, forward)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in stdio)
    conn.sendmsg([marshal.dumps(request)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    reply = conn.recv(64)
    if not reply:
        os.write(2, b"fake pulumi: the stand-in server went away\n")
        os._exit(255)
    status = marshal.loads(reply)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum != _signal.SIGKILL:  # whose disposition cannot be set (or caught)
            _signal.signal(signum, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal whose default is to continue
    os._exit(os.waitstatus_to_exitcode(status))


def _getsignal(signum: int) -> object:
    try:
        return _signal.getsignal(signum)
    except ValueError:
        return None


if __name__ == "__main__":
    main()
