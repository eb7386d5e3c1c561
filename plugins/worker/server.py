"""Warm worker: one pre-imported process runs the calls of many (docs/worker-threat-model.md).

Started in the background by a client that finds no worker (plugins/worker/client.py, which
starts it through plugins/worker/spawn.py), as this same executable with
PYCNI_WORKER_SERVE=<socket path> and the client's environment minus CNI_*, or by systemd socket
activation (LISTEN_FDS=1: the listener is descriptor 3); plugins/worker/startup.py takes it from
there to this accept loop. The worker directory is used only through a descriptor
(plugins/worker/directory.py): the socket is bound through it, `<socket>.lock` (one worker per
socket, holding its pid) and the attachment locks are opened in it without following symlinks.
The worker imports every plugin module and builds their models, then listens on a
SOCK_SEQPACKET unix socket (mode 0600).

The main thread only accepts and receives (plugins/worker/request.py): a connection waits at most
RECV_SECONDS for its request (at most PENDING_MAX such connections, the oldest dropped first),
and a request waits at most QUEUE_SECONDS in a queue of QUEUE_MAX for one of MAX_CALLS call
threads; beyond that it is refused (every bound: plugins/worker/limits.py). Parked connections
cost no thread and never keep the worker from idling out. A call thread:

* pins the caller (plugins/worker/peer.py: SO_PEERPIDFD, else the pidfd the client sent) and
  refuses it ("R", the reason to the worker log only) unless its uid, build id, environment
  (CNI_* aside), pid and user namespaces, capability sets, no_new_privs, seccomp mode and LSM
  label equal the worker's (plugins/worker/admission.py), so no caller gains a privilege it does
  not have;
* answers "A", takes the attachment lock (plugins/worker/attachment.py; a bounded wait, or the
  lock the caller's ancestry holds when it presents it as the request's 4th descriptor) and
  drops the call if the caller exited or hung up meanwhile;
* unshares its fs_struct, enters the caller's mount namespace, root, working directory, umask
  and network namespace from descriptors opened before the decision (plugins/worker/calls.py);
* runs `cni.skel.run` with the caller's environment, its stdin (at most MAX_STDIN bytes within
  STDIN_SECONDS) and stderr, and sends "O<stdout>" + "X<status>" (each send within
  SEND_SECONDS).

The worker exits after PYCNI_WORKER_IDLE seconds (default 30) without a call, after
PYCNI_WORKER_MAX calls (default 10000) or PYCNI_WORKER_MAX_AGE seconds (default 600), or once it
is stale (its executable replaced, or, from source, a loaded module changed). A resident worker
(PYCNI_WORKER_RESIDENT=1, or socket-activated) has no idle or age limit and checks staleness
every STALE_SECONDS. Exiting unlinks the socket (not systemd's) and releases the lock first;
requests not yet accepted see their connection close and run in-process; calls in progress
finish within DRAIN_SECONDS.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from cni import skel
from plugins.worker import attachment, calls, directory, peer
from plugins.worker.admission import Identity
from plugins.worker.limits import (
    DRAIN_SECONDS,
    IDLE_DEFAULT,
    LISTEN_BACKLOG,
    LOCK_SECONDS,
    MAX_AGE_DEFAULT,
    MAX_CALLS,
    MAX_SERVED_DEFAULT,
    PENDING_MAX,
    QUEUE_MAX,
    RECV_SECONDS,
    SEND_SECONDS,
    STALE_SECONDS,
    number,
)
from plugins.worker.log import WorkerLog
from plugins.worker.request import Request, peer_gone, receive, refuse_now

# entry point name -> its cni.skel.Plugin (plugins/multicall.py knows them; the worker does not)
PluginFor = Callable[[str], skel.Plugin]
# an accepted connection without a request yet, by descriptor: (connection, deadline)
Pending = OrderedDict[int, tuple[socket.socket, float]]


class Worker:
    """The server: accept loop, bounded call threads, idle/stale/limit shutdown."""

    def __init__(
        self,
        dirfd: int,
        sock_name: str,
        self_path: str,
        plugin_for: PluginFor,
        names: frozenset[str],
        resident: bool = False,
    ) -> None:
        self.dirfd = dirfd
        self.sock_name = sock_name
        self.plugin_for = plugin_for
        self.names = names
        self.resident = resident
        self.activated = False
        self.identity = Identity(self_path)
        self.idle = number("PYCNI_WORKER_IDLE", IDLE_DEFAULT)
        self.max_requests = int(number("PYCNI_WORKER_MAX", MAX_SERVED_DEFAULT))
        self.max_age = number("PYCNI_WORKER_MAX_AGE", MAX_AGE_DEFAULT)
        self.lock_wait = number("PYCNI_WORKER_LOCK_WAIT", LOCK_SECONDS)
        self.started = time.monotonic()
        self.active = 0
        self.served = 0
        self.last = time.monotonic()
        self.cond = threading.Condition()
        self._sock_id: tuple[int, int] | None = None
        self.log = WorkerLog()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.lock_fd: int | None = None
        self.stderr = calls.Routed(sys.stderr)

    # ------------------------------------------------------------------ one call

    def refusal(self, caller: peer.Caller, req: Request) -> str | None:
        """Why this worker must not run the pinned caller's call, or None."""
        why = self.identity.refusal(caller, req)
        if why is None and self.identity.is_stale():
            self._unlink()  # no new client reaches a stale worker
            return "stale"
        return why

    def handle(self, req: Request) -> None:
        """One request, on its own call thread (which ends with it)."""
        conn = req.conn
        caller: peer.Caller | None = None
        held = None
        try:
            conn.settimeout(SEND_SECONDS)
            try:
                caller = peer.pin(conn, req.pidfd)
            except peer.Refused as e:
                if not isinstance(e, peer.Gone):
                    self.log.line(f"refused: {e}")
                conn.send(b"R")
                return
            why = self.refusal(caller, req)
            if why is not None:
                self.log.line(f"refused pid {caller.pid}: {why}")
                conn.send(b"R")
                return
            if not caller.alive():
                return  # decided about a process that is gone: nothing to answer
            conn.send(b"A")
            with self.cond:
                self.served += 1
            pinned = caller
            held = attachment.acquire(
                self.dirfd, req.env, self.lock_wait, req.inherited,
                cancelled=lambda: not pinned.alive() or peer_gone(conn),
            )
            if not caller.alive() or peer_gone(conn):
                return  # killed while it waited: the runtime no longer expects this call
            plugin = self.plugin_for(req.name)
            rc, out = calls.call(
                req, caller, plugin, held is not None, self.identity.own_mnt, self.stderr
            )
            data = out.encode("utf-8", "surrogateescape")
            for i in range(0, len(data), 65536):
                conn.send(b"O" + data[i : i + 65536])
            conn.send(b"X" + bytes([rc & 0xFF]))
        except OSError:
            pass  # the client went away or stopped reading; nothing to answer
        except BaseException:
            self.log.exception()
            raise
        finally:
            if held is not None:
                held.release()
            if caller is not None:
                caller.close()
            req.close()

    # ------------------------------------------------------------------ loop

    def _thread(self, req: Request) -> None:
        try:
            self.handle(req)
        finally:
            with self.cond:
                self.active -= 1
                self.last = time.monotonic()
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full: the loop is awake anyway

    def _done(self, queue: deque[Request]) -> bool:
        """True when the worker should stop accepting."""
        now = time.monotonic()
        if self.identity.stale or self.served >= self.max_requests:
            return True
        with self.cond:
            idle = self.active == 0 and not queue
            idle_for = now - self.last if idle else 0.0
        if idle and now - self.identity.checked >= STALE_SECONDS and self.identity.is_stale():
            return True
        if self.resident:
            return False
        return idle_for >= self.idle or now - self.started >= self.max_age

    def serve(self, listener: socket.socket) -> None:
        """Accept until idle, stale or at a limit; then close and wait for the calls."""
        listener.setblocking(False)
        lfd = listener.fileno()
        poller = select.poll()
        poller.register(lfd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        pending: Pending = OrderedDict()
        queue: deque[Request] = deque()
        try:
            while not self._done(queue):
                now = time.monotonic()
                waits = [STALE_SECONDS if self.resident else 1.0]
                if pending:
                    waits.append(next(iter(pending.values()))[1] - now)
                if queue:
                    waits.append(queue[0].deadline - now)
                for fd, _ev in poller.poll(max(10, int(min(waits) * 1000) + 1)):
                    if fd == lfd:
                        self._accept(listener, poller, pending)
                    elif fd == self._wake_r:
                        try:
                            os.read(self._wake_r, 4096)
                        except OSError:
                            pass
                    elif fd in pending:
                        conn, _ = pending.pop(fd)
                        poller.unregister(fd)
                        self._queue(receive(conn, self.names, self.log.line), queue)
                self._expire(poller, pending, queue)
                self._dispatch(queue)
        finally:
            self._close(listener, pending, queue)

    def _queue(self, req: Request | None, queue: deque[Request]) -> None:
        if req is None:
            return
        if len(queue) >= QUEUE_MAX:
            refuse_now(req.conn, req.fds, "queue full", self.log.line)
            req.fds = []
        else:
            queue.append(req)

    def _close(self, listener: socket.socket, pending: Pending, queue: deque[Request]) -> None:
        self._unlink()
        listener.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # a successor may start while calls drain
            self.lock_fd = None
        for conn, _ in pending.values():
            conn.close()
        for req in queue:
            req.close()  # not accepted: the client runs its call itself
        # Calls in progress finish; one that hangs (its client long killed by the runtime's
        # timeout) does not keep the worker alive past DRAIN_SECONDS.
        deadline = time.monotonic() + DRAIN_SECONDS
        with self.cond:
            while self.active and time.monotonic() < deadline:
                self.cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _accept(self, listener: socket.socket, poller: select.poll, pending: Pending) -> None:
        for _ in range(PENDING_MAX):
            try:
                conn, _ = listener.accept()
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: let calls end instead of spinning
                return  # nothing more (EAGAIN), or a connection that went away
            conn.setblocking(False)
            fd = conn.fileno()
            pending[fd] = (conn, time.monotonic() + RECV_SECONDS)
            poller.register(fd, select.POLLIN)
            if len(pending) > PENDING_MAX:  # the oldest has had longest to send its request
                old_fd, (old, _) = pending.popitem(last=False)
                poller.unregister(old_fd)
                old.close()

    def _expire(self, poller: select.poll, pending: Pending, queue: deque[Request]) -> None:
        now = time.monotonic()
        while pending:
            fd, (conn, deadline) = next(iter(pending.items()))
            if deadline > now:
                break
            del pending[fd]
            poller.unregister(fd)
            conn.close()
        while queue and queue[0].deadline <= now:
            queue.popleft().close()  # never accepted: the client runs its call itself

    def _dispatch(self, queue: deque[Request]) -> None:
        while queue:
            with self.cond:
                if self.active >= MAX_CALLS:
                    return
                self.active += 1
            req = queue.popleft()
            req.conn.setblocking(True)
            try:
                threading.Thread(target=self._thread, args=(req,), daemon=True).start()
            except RuntimeError:  # no thread to be had: the client runs its call itself
                with self.cond:
                    self.active -= 1
                req.close()
                return

    def _unlink(self) -> None:
        if self.activated or self._sock_id is None:
            return  # systemd's socket stays
        try:
            st = os.stat(self.sock_name, dir_fd=self.dirfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == self._sock_id:
                os.unlink(self.sock_name, dir_fd=self.dirfd)
        except OSError:
            pass

    def listen(self) -> socket.socket:
        """Bind the socket (replacing a dead worker's file) and listen; the lock must be held."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            os.unlink(self.sock_name, dir_fd=self.dirfd)
        except FileNotFoundError:
            pass
        old = os.umask(0o077)
        try:
            listener.bind(directory.proc_path(self.dirfd, self.sock_name))
        finally:
            os.umask(old)
        st = os.stat(self.sock_name, dir_fd=self.dirfd, follow_symlinks=False)
        self._sock_id = (st.st_dev, st.st_ino)
        listener.listen(LISTEN_BACKLOG)
        self.last = time.monotonic()
        return listener
