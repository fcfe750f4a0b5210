"""Runs VMM processes and timestamps what they print, as it arrives.

Every time is in seconds since just before the process was spawned (the closest a parent
can get to "process start"). A process's stdout is the guest console for every VMM here;
stderr carries the VMM's own messages.
"""
import os
import re
import selectors
import signal
import subprocess
import time

# QEMU stops the VM (and keeps running) when KVM cannot emulate an instruction.
QEMU_EMULATION_FAILURE = re.compile(r"KVM internal error|emulation failure")


# Every process ever started, so that an exit handler can kill whatever is still running.
STARTED = []


def now():
    return time.monotonic()


class Proc:
    """One VMM process being watched.

    markers: {name: substring}; the first line (stdout or stderr) containing it sets
             self.marks[name] to the arrival time of that line.
    send:    {marker name: bytes, or a function returning them} written to the process's
             stdin (the guest console) when the marker is seen; "start": right after spawning.
    stop_on: marker name after which the process is asked to stop (SIGTERM) once
             `grace` seconds passed and memory was sampled (if asked).
    mem_after: marker name; `mem_delay` seconds after it, /proc/PID/status and smaps are
             read into self.mem (ram_match picks the guest-RAM mappings).
    """

    def __init__(self, name, cmd, markers=None, stop_on=None, grace=0.0, mem_after=None,
                 mem_delay=0.0, ram_match=None, timeout=60.0, log_path=None, keep_lines=True,
                 send=None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.markers = dict(markers or {})
        self.stop_on = stop_on
        self.grace = grace
        self.mem_after = mem_after
        self.mem_delay = mem_delay
        self.ram_match = ram_match
        self.timeout = timeout
        self.log_path = log_path
        self.keep_lines = keep_lines
        self.send = dict(send or {})  # {marker name: bytes written to stdin when it is seen}
        self.marks = {}
        self.first_byte = {}
        self.lines = []
        self.mem = None
        self.rc = None
        self.timed_out = False
        self.failure = None
        self.failure_t = None
        self.end = None
        self._buf = {"out": b"", "err": b""}
        self._stop_at = None
        self._mem_at = None
        self._term_sent = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        self.t0 = now()
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        STARTED.append(self)
        if "start" in self.send:  # input for the guest from the first moment on
            self.p.stdin.write(self.send["start"])
            self.p.stdin.flush()
        self._open = 2
        self._exited_at = None
        for f in (self.p.stdout, self.p.stderr):
            os.set_blocking(f.fileno(), False)
        return self

    def elapsed(self):
        return now() - self.t0

    def alive(self):
        return self.rc is None

    def terminate(self, sig=signal.SIGTERM):
        if self.rc is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def ask_to_stop(self):
        """SIGTERM at watch()'s next look, SIGKILL 3 s later if it is still there."""
        if self._stop_at is None or self._stop_at > self.elapsed():
            self._stop_at = self.elapsed()

    # -- output ----------------------------------------------------------------------------
    def feed(self, stream, data, t):
        if stream not in self.first_byte and data:
            self.first_byte[stream] = t
        buf = self._buf[stream] + data
        parts = re.split(rb"\r?\n|\r", buf)
        self._buf[stream] = parts.pop()
        for raw in parts:
            self.line(stream, raw.decode("utf-8", "replace"), t)

    def flush(self, t):
        for stream, buf in self._buf.items():
            if buf:
                self.line(stream, buf.decode("utf-8", "replace"), t)
                self._buf[stream] = b""

    def line(self, stream, text, t):
        if self.keep_lines and text.strip():
            self.lines.append((t, stream, text))
        for name, needle in self.markers.items():
            if name not in self.marks and needle in text:
                self.marks[name] = t
                if name == self.stop_on:
                    self._stop_at = t + self.grace
                if name == self.mem_after:
                    self._mem_at = t + self.mem_delay
                if name in self.send:
                    try:
                        data = self.send[name]
                        if callable(data):  # e.g. to read the VMM's metrics at that moment
                            data = data()
                        self.p.stdin.write(data)
                        self.p.stdin.flush()
                    except (BrokenPipeError, ValueError):
                        pass
        if stream == "err" and self.failure is None and QEMU_EMULATION_FAILURE.search(text):
            self.failure = "emulation"
            self.failure_t = t
            self._stop_at = t + 0.5  # let the register dump and the "Code=" line arrive

    # -- periodic checks -------------------------------------------------------------------
    def tick(self):
        t = self.elapsed()
        if self._mem_at is not None and self.mem is None and t >= self._mem_at:
            self.mem = read_memory(self.p.pid, self.ram_match)
        waiting_for_mem = self._mem_at is not None and self.mem is None
        if self._term_sent is None:
            if t >= self.timeout:
                self.timed_out = True
                self._send_term(t)
            elif self._stop_at is not None and t >= self._stop_at and not waiting_for_mem:
                self._send_term(t)
        elif t - self._term_sent > 3:
            self.terminate(signal.SIGKILL)

    def _send_term(self, t):
        self._term_sent = t
        self.terminate(signal.SIGTERM)

    def reap(self):
        rc = self.p.poll()
        if rc is not None and self.rc is None:
            self.rc = rc
            self.end = self.elapsed()
            self.flush(self.end)
            self.p.stdin.close()
            if self.log_path:
                self.write_log()
        return rc

    def write_log(self):
        with open(self.log_path, "w") as f:
            f.write("# " + " ".join(self.cmd) + "\n")
            for t, stream, text in self.lines:
                f.write(f"{t:10.6f} {stream} {text}\n")
            f.write(f"# exit {self.rc}{' (timeout)' if self.timed_out else ''}\n")

    def stderr_tail(self, n=3):
        return [text for _, s, text in self.lines if s == "err" and text.strip()][-n:]


def watch(procs, poll=0.05):
    """Runs the processes (already started) until all have exited and their output is read."""
    sel = selectors.DefaultSelector()
    for pr in procs:
        sel.register(pr.p.stdout, selectors.EVENT_READ, (pr, "out"))
        sel.register(pr.p.stderr, selectors.EVENT_READ, (pr, "err"))
    while any(pr.rc is None for pr in procs):
        for key, _ in sel.select(timeout=poll):
            pr, stream = key.data
            try:
                data = os.read(key.fileobj.fileno(), 65536)
            except BlockingIOError:
                continue
            t = pr.elapsed()
            if data:
                pr.feed(stream, data, t)
            else:
                sel.unregister(key.fileobj)
                pr._open -= 1
        for pr in procs:
            if pr.rc is not None:
                continue
            pr.tick()
            if pr.p.poll() is not None:
                if pr._exited_at is None:
                    pr._exited_at = now()
                # Read what it wrote before exiting; a child that inherited the pipes must
                # not keep us waiting, though.
                if pr._open == 0 or now() - pr._exited_at > 2:
                    pr.reap()
    for pr in procs:
        for f in (pr.p.stdout, pr.p.stderr):
            try:
                sel.unregister(f)
            except (KeyError, ValueError):
                pass
            f.close()
    sel.close()
    return procs


def watch_once(pr, poll=0.05):
    """Reads what one running process has written so far (for waiting on a marker while
    doing something else); watch() finishes the job."""
    sel = selectors.DefaultSelector()
    for f, stream in ((pr.p.stdout, "out"), (pr.p.stderr, "err")):
        if not f.closed:
            sel.register(f, selectors.EVENT_READ, stream)
    for key, _ in sel.select(timeout=poll):
        try:
            data = os.read(key.fileobj.fileno(), 65536)
        except BlockingIOError:
            continue
        if data:
            pr.feed(key.data, data, pr.elapsed())
    sel.close()


def pump(procs, seconds):
    """Reads what the running processes print for `seconds`."""
    end = time.monotonic() + seconds
    while True:
        alive = [pr for pr in procs if pr.p.poll() is None]
        for pr in alive:
            watch_once(pr, poll=0.01)
        left = end - time.monotonic()
        if left <= 0:
            return
        if not alive:
            time.sleep(min(left, 0.05))


def wait_until(procs, cond, seconds):
    """Reads what the processes print until cond() holds (True) or `seconds` pass (False)."""
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        pump(procs, 0.05)
    return cond()


def run(*args, **kwargs):
    return run_proc(Proc(*args, **kwargs))


def run_proc(pr):
    return watch([pr.start()])[0]


def kill_all(procs=None):
    for pr in STARTED if procs is None else procs:
        if getattr(pr, "p", None) is not None and pr.rc is None:
            pr.terminate(signal.SIGKILL)
            try:
                pr.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


# -- memory ------------------------------------------------------------------------------

def read_memory(pid, ram_match):
    """VmHWM/VmRSS of the process and the resident size of its guest-RAM mappings, in KiB.

    ram_match(path, size_kb) -> bool picks guest-RAM mappings in /proc/PID/smaps.
    Returns None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/smaps") as f:
            smaps = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    out = {}
    for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
        m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        if m:
            out[key.lower() + "_kb"] = int(m.group(1))
    guest = pss = 0
    cur = None
    for line in smaps.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            fields = line.split(None, 5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            cur = {"path": fields[5] if len(fields) > 5 else "", "size_kb": (hi - lo) // 1024}
        elif cur is not None and line.startswith("Rss:"):
            rss = int(line.split()[1])
            if ram_match and ram_match(cur["path"], cur["size_kb"]):
                guest += rss
        elif line.startswith("Pss:"):
            pss += int(line.split()[1])
    out["guest_rss_kb"] = guest
    out["pss_kb"] = pss
    return out


def pss_kb(pid):
    """The process's proportional set size (shared pages split between their users) in KiB, from
    /proc/PID/smaps_rollup; None when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mem_available_kb():
    with open("/proc/meminfo") as f:
        m = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0
