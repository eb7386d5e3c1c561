"""Fuzzing the warm worker's wire protocol, as test_fuzz.py fuzzes the plugins' stdin.

One live worker of dist/bin gets PYCNI_WORKER_FUZZ_CASES malformed requests (default 10,000,
about 15 s), each on its own connection, from a driver process inside a
throwaway node namespace (an accepted call acts there): truncated and oversized frames, wrong
magic, missing, extra and non-file descriptors, NUL and non-UTF-8 in names and environment,
replies never read, connections closed mid-request. Every case read back must be refused ("R")
or answered ("A", output, "X") with valid JSON on stdout (a CNI error whenever the status is
not 0). Afterwards the worker is the same process, has no more threads or descriptors than
before, and still serves a good call.

The file is also the driver: `python test_worker_wire_fuzz.py <spec JSON>` prints its findings.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time

from tests import worker_testlib as wt

CASE_SECONDS = 15.0  # no single case may take longer (the worker's bounds are shorter)


# ---------------------------------------------------------------- the driver (own process)

def _fd_kinds(tmp: str) -> dict[str, callable]:
    """Makers of descriptors of every kind a request may carry in place of stdin/stderr/pidfd."""

    def pipe_with(data: bytes):
        def make():
            r, w = os.pipe()
            os.write(w, data)
            os.close(w)
            return r
        return make

    def sock():
        a, b = socket.socketpair()
        b.close()
        return a.detach()

    def listening():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(f"\0pycni-fuzz-{os.getpid()}-{random.random()}")
        s.listen(1)
        return s.detach()

    def pipe_write_end():
        r, w = os.pipe()
        os.close(r)
        return w

    return {
        "pipe-json": pipe_with(b'{"cniVersion": "1.0.0", "name": "n", "type": "bridge"}'),
        "pipe-garbage": pipe_with(bytes(random.randrange(256) for _ in range(64))),
        "pipe-empty": pipe_with(b""),
        "devnull": lambda: os.open(os.devnull, os.O_RDWR),
        "dir": lambda: os.open(tmp, os.O_RDONLY | os.O_DIRECTORY),
        "opath": lambda: os.open(tmp, os.O_PATH),
        "socket": sock,
        "listening": listening,
        "pidfd": lambda: os.pidfd_open(os.getpid()),
        "eventfd": lambda: os.eventfd(0),
        "pipe-write-end": pipe_write_end,
        "devzero": lambda: os.open("/dev/zero", os.O_RDONLY),
    }


# stdin kinds whose read ends (EOF, error or the size limit) instead of waiting for the bound
# (a pidfd or a listening socket never polls readable: such a stdin holds its call for the
# worker's whole stdin time bound, which test_worker_security covers, not 10,000 times here)
_STDIN_KINDS = ("pipe-json", "pipe-garbage", "pipe-empty", "devnull", "dir", "opath", "socket",
                "pipe-write-end")


def _garble(value: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return value + b"\xff\xfe"
    if choice == 1:
        return b"\x80" + value
    if choice == 2:
        return value.replace(b"e", b"\xc3\x28", 1)
    if choice == 3:
        return b"\xed\xa0\x80" + value  # an encoded surrogate: not UTF-8
    return bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 20)))


class Driver:
    """Makes and sends the cases; collects what is not allowed."""

    def __init__(self, spec: dict) -> None:
        self.sock = spec["sock"]
        self.env = spec["env"]
        self.bid = spec["bid"]
        self.rng = random.Random(spec["seed"])
        random.seed(spec["seed"])
        self.kinds = _fd_kinds(spec["tmp"])
        self.findings: list[dict] = []
        self.outcomes: dict[str, int] = {}
        self.unread: list[socket.socket] = []
        self.slowest: dict[str, float] = {}

    # --- building
    def fields(self, command: str | None = None, valid: bool = False) -> list[bytes]:
        env = dict(self.env)
        env["CNI_COMMAND"] = command or self.rng.choice(
            ["VERSION", "ADD", "DEL", "CHECK", "STATUS", "GC", "BOGUS", ""])
        env["CNI_CONTAINERID"] = "fz" if valid else self.rng.choice(["fz", "", "a/b", "x" * 300])
        env["CNI_IFNAME"] = "eth0" if valid else self.rng.choice(["eth0", "", "x" * 20, "a/b"])
        # never /proc/self/...: in the worker that is the worker's main thread, not the caller
        env["CNI_NETNS"] = "/nonexistent" if valid else self.rng.choice(
            ["", "/nonexistent", "/proc/thread-self/ns/net"])
        fields = [
            b"PYCNI-W1",
            self.rng.choice([b"bridge", b"loopback", b"host-local"]),
            self.bid.encode(),
        ]
        return fields + [f"{k}={v}".encode() for k, v in env.items()]

    def case(self) -> tuple[str, bytes, list[str], dict]:
        """(kind, datagram, descriptor kinds, options)."""
        rng = self.rng
        fields = self.fields()
        fds = [rng.choice(_STDIN_KINDS), "devnull"]
        opts: dict = {}
        kind = rng.choice([
            "truncated", "oversized", "magic", "few-fds", "extra-fds", "odd-fds", "name-nul",
            "name-utf8", "env-utf8", "env-nul", "env-malformed", "random", "empty", "unread",
            "close-early", "close-after-send", "cni-garbage", "big-stdin", "second-datagram",
        ])
        if kind == "truncated":
            data = b"\0".join(fields)
            data = data[: rng.randrange(len(data))]
        elif kind == "oversized":
            data = b"\0".join(fields) + b"\0PAD=" + b"x" * (300 * 1024)
        elif kind == "magic":
            fields[0] = rng.choice([b"PYCNI-W0", b"", b"pycni-w1", b"PYCNI-W1x", b"\xff"])
            data = b"\0".join(fields)
        elif kind == "few-fds":
            data, fds = b"\0".join(fields), fds[: rng.randrange(2)]
        elif kind == "extra-fds":
            data = b"\0".join(fields)
            fds = (
                fds + ["pidfd"] + [rng.choice(list(self.kinds)) for _ in range(rng.randrange(1, 6))]
            )
        elif kind == "odd-fds":
            data = b"\0".join(fields)
            fds = [rng.choice(_STDIN_KINDS), rng.choice(list(self.kinds))]
            fds += [rng.choice(list(self.kinds)) for _ in range(rng.randrange(3))]
        elif kind == "name-nul":
            fields[1] = rng.choice([b"bri\0dge", b"\0", b"bridge\0\0"])
            data = b"\0".join(fields)
        elif kind == "name-utf8":
            fields[1] = _garble(fields[1], rng)
            data = b"\0".join(fields)
        elif kind == "env-utf8":
            i = rng.randrange(3, len(fields))
            fields[i] = _garble(fields[i], rng)
            data = b"\0".join(fields)
        elif kind == "env-nul":
            i = rng.randrange(3, len(fields))
            fields[i] = fields[i][:3] + b"\0" + fields[i][3:]
            data = b"\0".join(fields)
        elif kind == "env-malformed":
            fields.append(rng.choice([b"NOEQUALS", b"=value", b"CNI_COMMAND=ADD", b""]))
            data = b"\0".join(fields)
        elif kind == "random":
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
            if rng.randrange(2):
                data = b"PYCNI-W1\0" + data
        elif kind == "empty":
            data = b""
        elif kind == "cni-garbage":  # well-formed: a CNI error from the plugin, never a crash
            data = b"\0".join(self.fields(rng.choice(["ADD", "DEL", "CHECK", "BOGUS"])))
            fds = [
                rng.choice(["pipe-garbage", "pipe-json", "pipe-empty", "dir", "opath"]),
                "devnull",
            ]
        elif kind == "big-stdin":
            data = b"\0".join(self.fields("ADD", valid=True))
            fds = ["devzero", "devnull"]
        else:  # unread, close-early, close-after-send, second-datagram
            data = b"\0".join(fields)
            opts[kind] = True
        return kind, data, fds, opts

    # --- sending
    def run_case(self) -> None:
        kind, data, fd_kinds, opts = self.case()
        start = time.monotonic()
        fds = [self.kinds[k]() for k in fd_kinds]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.setsockopt(socket.SOL_SOCKET, 32, 1 << 21)  # SO_SNDBUFFORCE: oversized frames
            s.settimeout(CASE_SECONDS)
            s.connect(self.sock)
            if opts.get("close-early"):
                return self.count("closed before sending")
            anc = [
                (
                    socket.SOL_SOCKET,
                    socket.SCM_RIGHTS,
                    b"".join(f.to_bytes(4, "little") for f in fds),
                )
            ]
            try:
                s.sendmsg([data], anc if fds else [])
            except OSError as e:
                return self.count(f"send failed: {e.strerror}")
            if opts.get("second-datagram"):
                try:
                    s.send(b"PYCNI-W1\0more")
                except OSError:
                    pass  # already answered and closed: the replies are still to be read
            if opts.get("close-after-send"):
                return self.count("closed after sending")
            if opts.get("unread"):
                self.unread.append(s)
                s = None
                if len(self.unread) > 100:
                    self.unread.pop(0).close()
                return self.count("replies never read")
            self.check(kind, fd_kinds, wt.replies(s, CASE_SECONDS))
        except TimeoutError:
            self.findings.append({"kind": kind, "fds": fd_kinds, "problem": "timed out"})
        except OSError as e:
            self.findings.append({"kind": kind, "fds": fd_kinds, "problem": f"{e.strerror}"})
        finally:
            for f in fds:
                os.close(f)
            if s is not None:
                s.close()
            took = time.monotonic() - start
            self.slowest[kind] = max(self.slowest.get(kind, 0.0), round(took, 3))
            if took > CASE_SECONDS:
                self.findings.append({"kind": kind, "problem": "slow", "s": took})

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def check(self, kind: str, fd_kinds: list[str], replies: list[bytes]) -> None:
        if replies == [b"R"]:
            return self.count("refused")
        problem = None
        if not replies or replies[0] != b"A":
            problem = "neither refused nor accepted"
        elif replies[-1][:1] != b"X" or len(replies[-1]) != 2:
            problem = "accepted but no exit status"
        else:
            out = b"".join(m[1:] for m in replies[1:-1]).decode("utf-8", "replace")
            status = replies[-1][1]
            try:
                obj = json.loads(out) if out else None
            except ValueError:
                obj, problem = None, "stdout not JSON"
            if status != 0 and not (isinstance(obj, dict) and isinstance(obj.get("code"), int)
                                    and isinstance(obj.get("msg"), str) and "\n" not in obj["msg"]):
                problem = problem or "failure without a CNI error"
            if problem is None:
                self.count("CNI error" if status else "answered")
                if kind == "big-stdin" and not (status and "limit" in out):
                    problem = "stdin over the limit not named"
        if problem:
            self.findings.append({"kind": kind, "fds": fd_kinds, "problem": problem,
                                  "replies": [r[:200].decode("utf-8", "replace") for r in replies]})


def _main(spec_text: str) -> None:
    spec = json.loads(spec_text)
    driver = Driver(spec)
    start = time.monotonic()
    for _ in range(spec["cases"]):
        driver.run_case()
    for s in driver.unread:
        s.close()
    print(json.dumps({"outcomes": driver.outcomes, "slowest": driver.slowest,
                      "findings": driver.findings[:20],
                      "finding_count": len(driver.findings), "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    _main(sys.argv[1])
    sys.exit(0)


# ---------------------------------------------------------------- the test

import pytest  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.netns]


def _cases() -> int:
    raw = os.environ.get("PYCNI_WORKER_FUZZ_CASES", "")
    return int(raw) if raw else 10000  # about 15 s


def test_wire_fuzz(node_ns, tmp_path, record_property):
    if not os.access(wt.DIST / "bridge", os.X_OK):
        pytest.skip("dist/bin not built (run `make build`)")
    cases = _cases()
    seed = int(os.environ.get("PYCNI_FUZZ_SEED", "") or 20261207)
    with wt.Served(PYCNI_WORKER_IDLE="300", PYCNI_WORKER_LOCK_WAIT="2") as served:
        served.start()
        good = '{"cniVersion": "1.0.0"}'
        assert wt.call(served, good.encode(), served.call_env("VERSION"))[-1] == b"X\x00"
        time.sleep(0.3)
        threads, fds = wt.threads(served.pid), wt.descriptors(served.pid)
        spec = {"sock": str(served.sock), "env": served.call_env("VERSION"), "bid": wt.build_id(),
                "seed": seed, "cases": cases, "tmp": str(tmp_path)}
        proc = node_ns.exec(sys.executable, __file__, json.dumps(spec), env=wt.caller_env(),
                            check=False, timeout=60 + cases * 0.2)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        record_property("worker_wire_fuzz", json.dumps({"cases": cases, **report}))
        print(f"worker wire fuzz: {cases} cases, seed {seed}: {report}")
        assert report["finding_count"] == 0, report["findings"]
        assert served.proc.poll() is None, "the worker died"
        # calls still draining (replies never read: bounded by the send timeout) settle first
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            wt.threads(served.pid) > threads or wt.descriptors(served.pid) > fds
        ):
            time.sleep(0.2)
        assert wt.threads(served.pid) <= threads, "threads left behind"
        assert wt.descriptors(served.pid) <= fds, os.listdir(f"/proc/{served.pid}/fd")
        replies = wt.call(served, good.encode(), served.call_env("VERSION"))
        assert replies[0] == b"A" and replies[-1] == b"X\x00", replies
