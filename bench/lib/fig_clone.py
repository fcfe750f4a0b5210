"""Figure 8: clones of one snapshot started at once (vmon only: QEMU has no equivalent of
restoring one snapshot as many VMs that share its memory file copy-on-write).

Each guest is booted once with an API socket, snapshotted with `vmon ctl snapshot DIR
--keep-running=false` while it waits for input, and stopped:
  echo   tests/guests/echo.c waiting for a line on its console (it answers "got: LINE" and
         powers off); N = 1, 8 and, not with --quick, 32
  linux  the default guest at its shell prompt; N = 1, 8 and 32, not with --quick
N is capped at half the available memory as in figure 5. Per N, N processes `vmon restore DIR
--clone --name P-i --api-sock RUN/i.sock` are spawned at once, each with its input already on
its stdin (the echo guest: a line; Linux: a shell command whose output differs from its echo).
Times are from spawning the first clone to each one's answer: clones per second = N / the last
answer; the median and the max of one clone. Memory with all N up: the sum of the clones' Pss
(/proc/PID/smaps_rollup) / N, and the part of it that maps the snapshot's memory file, against
the Pss of the one VM that was snapshotted. The Linux clones are measured once all answered;
the echo guest powers off after its answer, so its clones are measured in a second round,
restored without input and polling their consoles, then fed their line.
`vmon clone DIR --count N` (echo guest): the time until every clone's API answers, as it reports
it. Its clones read /dev/null and log their consoles to files, so it cannot time the guests'
answers; what it runs for each clone is the `vmon restore --clone` timed above.
Every process started here is stopped before this returns (Procs also by proc.kill_all at exit).
"""
import os
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time

import fig_boot
import fig_density
import proc
import report
import vmms
from common import fails, median, not_available, not_run, say

MEM_MB = 128
SETTLE_S = 1.0     # after the last clone is up: pages touched, prompt printed
ECHO_LINE = b"clone\n"
# The shell echoes the typed command with "$((40+2))" in it: only the output has the number.
LINUX_CMD = b"echo BENCH-CLONE-$((40+2))\n"
GUESTS = {
    "echo": {"label": "echo guest", "answer": "got: ", "input": ECHO_LINE, "limit": 120},
    "linux": {"label": "default guest", "answer": "BENCH-CLONE-42", "input": LINUX_CMD, "limit": 900},
}
KEYS = ("rate_per_s", "median_s", "max_s", "pss_per_clone_mib", "guest_pss_per_clone_mib")


def supported(ctx, sub, option):
    try:
        r = subprocess.run([ctx.vmon.binary, sub, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and option in r.stdout + r.stderr


def pss_kb(pid, prefix):
    """(Pss of the process, Pss of its mappings whose path starts with prefix) in KiB, or None."""
    total = proc.pss_kb(pid)
    if total is None:
        return None
    try:
        part, path = 0, ""
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                    fields = line.split(None, 5)
                    path = fields[5].strip() if len(fields) > 5 else ""
                elif line.startswith("Pss:") and path.startswith(prefix):
                    part += int(line.split()[1])
    except OSError:
        return None
    return total, part


def why(pr):
    return vmms.failure_reason(pr, 160)


def no_answer(procs, limit):
    """Why not every clone answered: how many did not, and the first one's reason."""
    bad = [pr for pr in procs if "answer" not in pr.marks]
    pr = bad[0]
    # Stopped by this figure (SIGTERM) or still there: it ran, but said nothing in time.
    reason = f"no answer within {limit} s" if pr.rc in (None, -15, 143) and not pr.timed_out else why(pr)
    return f"{len(bad)} of {len(procs)} clones did not answer ({pr.name}: {reason})"


def snapshot_source(ctx, guest, work):
    """Boots the guest, waits until it waits for input, measures it, snapshots it paused, stops it."""
    sock, snap = os.path.join(work, "src.sock"), os.path.join(work, "snap")
    if guest == "echo":
        cmd = ctx.vmon.cmd(os.path.join(ctx.root, "build", "guests", "echo.elf"), None, "console=ttyS0", 1, MEM_MB)
        markers, send, limit = {"ready": "echo ready"}, {}, 60
    else:
        cmd = ctx.vmon.cmd(ctx.guest["kernel"], ctx.guest["initrd"], fig_boot.LINUX_CMDLINE, 1, MEM_MB)
        # The shell's banner, then a command it answers: it reads its console.
        markers = {"shell": "Enter 'help'", "ready": "BENCH-SHELL-2"}
        send, limit = {"shell": b"echo BENCH-SHELL-$((1+1))\n"}, 900
    pr = proc.Proc(f"vmon-{guest}-source", cmd + ["--api-sock", sock, "--snapshot-dir", work], markers=markers,
                   send=send, timeout=limit + 600, log_path=ctx.log_path("clone", guest, "source")).start()
    r = {"snap": snap}
    try:
        while "ready" not in pr.marks and pr.elapsed() < limit and pr.p.poll() is None:
            proc.watch_once(pr)
        if "ready" not in pr.marks:
            r["failure"] = f"the {GUESTS[guest]['label']} did not get to wait for input"
            return r
        time.sleep(SETTLE_S)
        m = pss_kb(pr.p.pid, "/memfd:vmon-guest-ram")
        if m:
            r["one_vm_pss_mib"], r["one_vm_guest_pss_mib"] = m[0] / 1024, m[1] / 1024
        r["snapshot_s"], failure = ctx.vmon.snapshot(sock, snap, 600)
        if failure:
            r["failure"] = failure
    finally:
        pr.terminate()
        proc.watch([pr])
        if r.get("failure") and "snapshot_s" not in r:
            r["failure"] += f" ({why(pr)})"
    return r


def spawn(ctx, guest, snap, n, tag, with_input):
    """N `vmon restore --clone` processes started one right after the other; (procs, t0)."""
    g = GUESTS[guest]
    run_dir = os.path.join(os.path.dirname(snap), tag)
    os.makedirs(run_dir, exist_ok=True)
    procs = []
    for i in range(1, n + 1):
        name = f"b{os.getpid()}-{guest}-{i}"
        cmd = [ctx.vmon.binary, "restore", snap, "--clone", "--name", name,
               "--api-sock", os.path.join(run_dir, f"{i}.sock")]
        procs.append(proc.Proc(name, cmd, markers={"up": "VM restored in", "answer": g["answer"]},
                               send={"start": g["input"]} if with_input else None,
                               stop_on="answer" if guest == "echo" else None, grace=3.0,
                               timeout=g["limit"] + 60, log_path=ctx.log_path("clone", guest, tag, i)))
    t0 = proc.now()
    for pr in procs:
        pr.start()
    return procs, t0


def when_all(procs, mark, limit, then):
    """Runs then() in a thread once every process has `mark` or has exited, or after limit s."""
    def loop():
        end = proc.now() + limit
        while proc.now() < end and not all(mark in pr.marks or pr.rc is not None for pr in procs):
            time.sleep(0.05)
        then()
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th


def measure(procs, prefix, n, r):
    """Pss per clone with all N up; a failure when some were not up."""
    vals = [m for m in (pss_kb(pr.p.pid, prefix) for pr in procs if pr.rc is None) if m]
    r["measured"] = len(vals)
    if len(vals) == n:
        r["pss_per_clone_mib"] = sum(v[0] for v in vals) / n / 1024
        r["guest_pss_per_clone_mib"] = sum(v[1] for v in vals) / n / 1024
    else:
        r.setdefault("failure", f"only {len(vals)} of {n} clones were up to measure")


def latency_round(ctx, guest, snap, n, rep):
    """Clones with their input queued: times to each answer (and, for Linux, memory after it)."""
    g = GUESTS[guest]
    procs, t0 = spawn(ctx, guest, snap, n, f"lat-{n}-{rep}", True)
    r = {"guest": guest, "n": n, "rep": rep, "round": "latency"}

    def then():
        if guest == "linux" and all("answer" in pr.marks for pr in procs):
            time.sleep(SETTLE_S)
            measure(procs, os.path.join(snap, "memory-"), n, r)
        for pr in procs:  # the echo guest powers off after its answer
            if guest == "linux" or "answer" not in pr.marks:
                pr.terminate()
    th = when_all(procs, "answer", g["limit"], then)
    proc.watch(procs)
    th.join(timeout=5)
    lat = sorted(pr.t0 - t0 + pr.marks["answer"] for pr in procs if "answer" in pr.marks)
    r["answered"] = len(lat)
    if len(lat) == n:
        r.update(rate_per_s=n / lat[-1], median_s=statistics.median(lat), max_s=lat[-1])
    else:
        r["failure"] = no_answer(procs, g["limit"])
    return r


def memory_round(ctx, snap, n, rep):
    """Echo clones without input: all N polling their consoles are measured, then fed their line."""
    procs, _ = spawn(ctx, "echo", snap, n, f"mem-{n}-{rep}", False)
    r = {"guest": "echo", "n": n, "rep": rep, "round": "memory"}

    def then():
        time.sleep(SETTLE_S)
        measure(procs, os.path.join(snap, "memory-"), n, r)
        for pr in procs:
            if "up" not in pr.marks:
                pr.terminate()
                continue
            try:
                pr.p.stdin.write(ECHO_LINE)
                pr.p.stdin.flush()
            except (OSError, ValueError):
                pass
    th = when_all(procs, "up", GUESTS["echo"]["limit"], then)
    proc.watch(procs)
    th.join(timeout=5)
    r["answered_after"] = sum("answer" in pr.marks for pr in procs)
    if r["answered_after"] < n and "pss_per_clone_mib" in r:
        # Measured, but not all of them were running guests: no figure.
        del r["pss_per_clone_mib"], r["guest_pss_per_clone_mib"]
        r["failure"] = "after the measurement " + no_answer(procs, GUESTS["echo"]["limit"])
    return r


def stop_clones(snap, prefix):
    """Stops the clones `vmon clone` left running: by pid, each `vmon restore SNAP ... --name
    PREFIX-i` found in /proc (vmon clone prints the pids only when it ends)."""
    def args(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().decode(errors="replace").split("\0")
        except OSError:
            return []

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    mine = []
    for pid in (int(d) for d in os.listdir("/proc") if d.isdigit()):
        a = args(pid)
        if "restore" in a and snap in a and "--name" in a[:-1] and a[a.index("--name") + 1].startswith(prefix + "-"):
            mine.append(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 5
        while any(alive(p) for p in mine) and time.monotonic() < end:
            time.sleep(0.1)
        mine = [p for p in mine if alive(p)]


def vmon_clone_round(ctx, snap, n, rep):
    run_dir = os.path.join(os.path.dirname(snap), f"vc-{n}-{rep}")
    r = {"guest": "echo", "n": n, "rep": rep, "round": "vmon clone"}
    prefix = f"b{os.getpid()}-vc"
    out = err = ""
    t = time.monotonic()
    try:
        c = subprocess.run([ctx.vmon.binary, "clone", snap, "--count", str(n), "--name-prefix",
                            prefix, "--run-dir", run_dir, "--timeout", "120"],
                           capture_output=True, text=True, timeout=300)
        out, err = c.stdout, c.stderr
        r["wall_s"] = time.monotonic() - t
        m = re.search(r"(\d+) of (\d+) clones of .* running \(([\d.]+) s\)", err)
        if c.returncode == 0 and m:
            r["running"], r["reported_s"] = int(m.group(1)), float(m.group(3))
        else:
            lines = err.strip().splitlines() or [f"exit status {c.returncode}"]
            r["failure"] = "vmon clone: " + next((x for x in lines if " failed: " in x), lines[-1])[:200]
    except subprocess.TimeoutExpired as e:
        out, err = (e.stdout or b"").decode(), (e.stderr or b"").decode()
        r["failure"] = "vmon clone did not end within 300 s"
    finally:
        stop_clones(snap, prefix)
        with open(ctx.log_path("clone", "echo", f"vmon-clone-{n}-{rep}"), "w") as f:
            f.write(out + err)
    return r


def one_guest(ctx, guest, wanted, reps):
    work = os.path.join(ctx.bench_build, f"clone-{guest}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work = os.path.realpath(work)  # as /proc/PID/smaps names the memory file
    ns = sorted(set(fig_density.capped(n, MEM_MB) for n in wanted))
    out = {"mem_mb": MEM_MB, "wanted": list(wanted), "ns": ns, "runs": []}
    say(f"clone: {GUESTS[guest]['label']} on vmon: boot and snapshot (elapsed {ctx.elapsed():.0f} s)")
    src = snapshot_source(ctx, guest, work)
    out.update({k: v for k, v in src.items() if k != "snap"})
    if src.get("failure"):
        return out
    clone_cmd = guest == "echo" and supported(ctx, "clone", "--count")
    stuck = None  # after a round where no clone answered, more clones would only wait as long
    for rep in range(reps):
        for n in ns:
            if stuck:
                out["runs"].append({"guest": guest, "n": n, "rep": rep, "round": "latency", "failure": stuck})
                continue
            say(f"clone: {n} clone(s) of the {GUESTS[guest]['label']} at once (rep {rep + 1}/{reps})")
            out["runs"].append(latency_round(ctx, guest, src["snap"], n, rep))
            if out["runs"][-1]["answered"] == 0:
                stuck = f"skipped: no clone answered in the round of {n} ({out['runs'][-1]['failure']})"
            if guest == "echo":
                out["runs"].append(memory_round(ctx, src["snap"], n, rep))
            if clone_cmd:
                out["runs"].append(vmon_clone_round(ctx, src["snap"], n, rep))
    out["by_n"] = {}
    for n in ns:
        runs = [r for r in out["runs"] if r["n"] == n and r["round"] != "vmon clone"]
        row = {}
        for k in KEYS:
            v = median([r.get(k) for r in runs])
            row[k] = v if v is not None else fails(next((r["failure"] for r in runs if r.get("failure")), "no result"))
        vc = [r for r in out["runs"] if r["n"] == n and r["round"] == "vmon clone"]
        if vc:
            v = median([r.get("reported_s") for r in vc])
            row["vmon_clone_s"] = v if v is not None else fails(next((r["failure"] for r in vc if r.get("failure")),
                                                                        "no result"))
        out["by_n"][n] = row
    shutil.rmtree(work, ignore_errors=True)
    return out


def run(ctx):
    if not supported(ctx, "restore", "--clone") or "--api-sock" not in ctx.vmon.help_text():
        return {"available": False, "reason": "vmon has no vmon restore --clone yet"}
    res = {"available": True}
    if not os.path.exists(os.path.join(ctx.root, "build", "guests", "echo.elf")):
        res["echo"] = {"failure": "build/guests/echo.elf is missing (make guests)"}
    else:
        res["echo"] = one_guest(ctx, "echo", (1, 8) if ctx.quick else (1, 8, 32), 1 if ctx.quick else 3)
    if ctx.guest and not ctx.quick and "vmon" not in ctx.linux_failures:
        res["linux"] = one_guest(ctx, "linux", (1, 8, 32), 1)
    return res


def rows(ctx, res):
    """The table's rows: (label, vmon's value or Cell, other value or None, other's label)."""
    out = []
    for guest in ("echo", "linux"):
        what, g = GUESTS[guest]["label"], res.get(guest)
        if g is None:
            cell = (not_available("no default guest") if ctx.guest is None else
                    not_run("not run with --quick") if ctx.quick else
                    fails(ctx.linux_failures.get("vmon", "not run")))
            out.append((f"{what}: clones", cell, None, ""))
            continue
        if "by_n" not in g:
            out.append((f"{what}: clones", fails(g.get("failure", "no result")), None, ""))
            continue
        one, one_guest_ram = (g.get(k) for k in ("one_vm_pss_mib", "one_vm_guest_pss_mib"))
        for n, row in g["by_n"].items():
            p = f"{what}, {n} clone{'s' if n > 1 else ''}"
            out += [(f"{p}: clones/s (N / last answer)", row["rate_per_s"], None, ""),
                    (f"{p}: answer, median (s)", row["median_s"], report.num(row["max_s"]), "max"),
                    (f"{p}: memory per clone (Pss MiB)", row["pss_per_clone_mib"], one, "one booted VM"),
                    (f"{p}: of it, the memory file (MiB)", row["guest_pss_per_clone_mib"], one_guest_ram,
                     "its guest RAM")]
            if "vmon_clone_s" in row:
                out.append((f"{p}: vmon clone --count {n}, all APIs up (s)", row["vmon_clone_s"], None, ""))
    return out
