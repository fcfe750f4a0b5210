"""Figure 7: live migration between two processes of the same VMM on loopback.

Two guests: the tiny idle guest (tests/guests/idle.c: prints a line, halts) and
bench/guests/dirty.c, which keeps DIRTY_MIB MiB dirty at DIRTY_MIB_S MiB/s (paced by the TSC at
the host's rate, read here and given to every VMM alike). Each at 128 MiB and, without --quick,
1 GiB. A run: the source boots the guest, the destination waits, the guest has run a second,
then the migration with a downtime target of TARGET_MS:
  vmon  vmon run --api-sock S / vmon receive --listen tcp:127.0.0.1:P / vmon ctl --sock S migrate
        tcp:127.0.0.1:P --max-downtime 300 (pre-copy, bandwidth unlimited: vmon's default)
  QEMU  the same command line twice, the second with -incoming tcp:127.0.0.1:P, both with a QMP
        socket: migrate-set-parameters downtime-limit 300 and max-bandwidth effectively unlimited
        (QEMU's default is 32 MiB/s), migrate, query-migrate until it ends.
Recorded: the downtime, the total time and the rounds each VMM reports itself (vmon: `vmon ctl
migrate`'s last line, else the source's log; QEMU: query-migrate's downtime, total-time and
ram.dirty-sync-count), and whether the guest runs on at the destination: it says so (vmon's
API state, QEMU's query-status "running") and, for the dirty guest, prints a "count:" line there.
Every process is stopped when its run ends, also on failure and Ctrl-C (proc.kill_all at exit).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import proc
import vmms
from common import fails, median, not_run, rotations, say

TARGET_MS = 300
# Pre-copy converges on this over loopback: the guest dirties 64 MiB/s, far below what loopback
# carries (GB/s), and even the whole 32 MiB working set sent at the switch takes under 300 ms at
# anything above about 110 MiB/s. At QEMU's default cap of 32 MiB/s it would never converge.
DIRTY_MIB, DIRTY_MIB_S = 32, 64
GUESTS = {"idle": ("idle", "idle guest sleeping"), "dirty": ("dirty", "dirty: ready")}
GUEST_LABEL = {"idle": "idle guest", "dirty": f"dirty guest ({DIRTY_MIB} MiB at {DIRTY_MIB_S} MiB/s)"}
QEMU_MAX_BANDWIDTH = 100 << 30  # bytes/s: effectively unlimited on loopback
START_S = 60        # the guest's first line on the source, the destination listening
SETTLE_S = 1.0      # the guest runs this long on the source before the migration
MIGRATE_S = 300     # the migration's outcome
DEST_S = 5.0        # after it: the guest shows it runs on the destination
LONG = 3600         # no Proc timeout of its own: each run stops its processes


class Failed(Exception):
    """A run that could not be measured: what went wrong, and the process that can say why."""

    def __init__(self, what, pr=None):
        super().__init__(what)
        self.what = what
        self.pr = pr


def why(pr):
    return vmms.failure_reason(pr, 200)


def host_tsc_khz():
    """(kHz, where it came from): sysfs, else the kernel's calibration in dmesg, else cpuinfo."""
    try:
        with open("/sys/devices/system/cpu/cpu0/tsc_freq_khz") as f:
            return int(f.read().strip()), "tsc_freq_khz"
    except (OSError, ValueError):
        pass
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        log = ""
    for pattern in (r"tsc: Refined TSC clocksource calibration: ([\d.]+) MHz", r"tsc: Detected ([\d.]+) MHz"):
        m = re.findall(pattern, log)
        if m:
            return int(float(m[-1]) * 1000), "dmesg"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
        if m:
            return int(float(m.group(1)) * 1000), "cpuinfo"
    except OSError:
        pass
    return 2000000, "guessed"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drain(pr):
    """Reads what an exited process left in its pipes."""
    for f, stream in ((pr.p.stdout, "out"), (pr.p.stderr, "err")):
        while True:
            try:
                data = os.read(f.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                break
            pr.feed(stream, data, pr.elapsed())


def console_has(pr, needle):
    return any(s == "out" and needle in text for _, s, text in pr.lines)


class Qmp:
    """QEMU's monitor protocol on a Unix socket: one command at a time, events skipped."""

    def __init__(self, path, pr, seconds=10):
        end = time.monotonic() + seconds
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(10)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end or pr.p.poll() is not None:
                    raise Failed("QEMU's QMP socket did not come up", pr)
                time.sleep(0.05)
        self.f = self.sock.makefile("rwb")
        self.reply()  # the greeting
        self.cmd("qmp_capabilities")

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise Failed("QEMU closed its QMP socket")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        msg = self.reply()
        if "error" in msg:
            raise Failed(f"QMP {name}: {msg['error'].get('desc', msg['error'])}")
        return msg["return"]

    def close(self):
        self.sock.close()


def vmon_migrate(ctx, guest, mem, cmdline, rep, work, procs, r):
    binary = ctx.vmon.binary
    src_sock, dst_sock = os.path.join(work, "src.sock"), os.path.join(work, "dst.sock")
    addr = f"tcp:127.0.0.1:{free_port()}"
    elf, ready = GUESTS[guest]
    src = proc.Proc("vmon-src", ctx.vmon.cmd(ctx.guest_elf(elf), None, cmdline, 1, mem) + ["--api-sock", src_sock],
                    markers={"ready": ready}, timeout=LONG,
                    log_path=ctx.log_path("migrate", "vmon", guest, mem, rep, "src"))
    dst = proc.Proc("vmon-dst", [binary, "receive", "--listen", addr, "--api-sock", dst_sock],
                    markers={"listening": "waiting for a migration"}, timeout=LONG,
                    log_path=ctx.log_path("migrate", "vmon", guest, mem, rep, "dst"))
    procs.append(src.start())
    procs.append(dst.start())
    if not proc.wait_until(procs, lambda: "ready" in src.marks or src.p.poll() is not None, START_S) \
            or "ready" not in src.marks:
        raise Failed("the source did not start the guest", src)
    if not proc.wait_until(procs, lambda: "listening" in dst.marks or dst.p.poll() is not None, START_S) \
            or "listening" not in dst.marks:
        raise Failed("vmon receive did not listen", dst)
    proc.pump(procs, SETTLE_S)
    ctl = proc.Proc("vmon-ctl", [binary, "ctl", "--sock", src_sock, "migrate", addr, "--max-downtime", TARGET_MS],
                    timeout=LONG, log_path=ctx.log_path("migrate", "vmon", guest, mem, rep, "ctl"))
    procs.append(ctl.start())
    if not proc.wait_until(procs, lambda: ctl.p.poll() is not None, MIGRATE_S):
        raise Failed(f"vmon ctl migrate had no outcome within {MIGRATE_S} s")
    # The source stops after the switch: its exit status, and its last log lines.
    if ctl.p.poll() == 0:
        proc.wait_until(procs, lambda: src.p.poll() is not None, DEST_S)
    r["source_exit"] = src.p.poll()
    if r["source_exit"] is not None:
        drain(src)
    out = " ".join(text for _, s, text in ctl.lines if s == "out")
    m = re.search(r"migrated to \S+ in (\d+) rounds: downtime (\d+) ms, total (\d+) ms", out)
    if m:
        r["rounds"], r["downtime_ms"], r["total_ms"] = (int(x) for x in m.groups())
    else:
        # The source stops right after the switch, and vmon ctl may find it gone before it saw
        # "completed": the source's log has the same figures.
        log = " ".join(text for _, s, text in src.lines if s == "err")
        m = re.search(r"migrated to \S+: the guest runs there now \(downtime (\d+) ms, total (\d+) ms\)", log)
        if not m and ctl.p.poll() == 0:
            last = next((text for _, s, text in reversed(ctl.lines) if s == "out"), "")
            raise Failed(f"neither vmon ctl migrate (\"{last[:100]}\") nor the source's log gave the figures")
        if not m:
            raise Failed("vmon ctl migrate failed", ctl)
        r["downtime_ms"], r["total_ms"] = int(m.group(1)), int(m.group(2))
        rounds = [int(x) for x in re.findall(r"\bround (\d+): \d+ KiB sent in", log)]
        r["rounds"] = max(rounds) if rounds else None

    def dest_runs():
        if dst.p.poll() is not None:
            return False
        try:
            info = subprocess.run([binary, "ctl", "--sock", dst_sock, "info"], capture_output=True, text=True,
                                  timeout=30)
            return json.loads(info.stdout).get("state") == "running"
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return False
    r["dest_state_running"] = dest_runs()
    r["dest_console"] = guest != "dirty" or proc.wait_until(procs, lambda: console_has(dst, "count: "), DEST_S)
    if not (r["dest_state_running"] and r["dest_console"]):
        raise Failed("the guest did not run on at the destination"
                     + ("" if r["dest_console"] else " (no count: line there)"),
                     dst if dst.p.poll() is not None else None)


def qemu_migrate(ctx, vmm, guest, mem, cmdline, rep, work, procs, r):
    port = free_port()
    elf, ready = GUESTS[guest]
    cmd = vmm.cmd(ctx.guest_elf(elf), None, cmdline, 1, mem)
    src_q, dst_q = os.path.join(work, "src.qmp"), os.path.join(work, "dst.qmp")
    src = proc.Proc(f"{vmm.name}-src", cmd + ["-qmp", f"unix:{src_q},server=on,wait=off"],
                    markers={"ready": ready}, timeout=LONG,
                    log_path=ctx.log_path("migrate", vmm.name, guest, mem, rep, "src"))
    dst = proc.Proc(f"{vmm.name}-dst", cmd + ["-qmp", f"unix:{dst_q},server=on,wait=off",
                                              "-incoming", f"tcp:127.0.0.1:{port}"],
                    timeout=LONG, log_path=ctx.log_path("migrate", vmm.name, guest, mem, rep, "dst"))
    procs.append(src.start())
    procs.append(dst.start())
    qmps = []
    try:
        if not proc.wait_until(procs, lambda: "ready" in src.marks or src.p.poll() is not None, START_S) \
                or "ready" not in src.marks:
            raise Failed("the source did not start the guest", src)
        qs = Qmp(src_q, src)
        qmps.append(qs)
        qd = Qmp(dst_q, dst)
        qmps.append(qd)
        if qd.cmd("query-status")["status"] != "inmigrate":
            raise Failed("the destination QEMU does not wait for a migration", dst)
        proc.pump(procs, SETTLE_S)
        qs.cmd("migrate-set-parameters", **{"downtime-limit": TARGET_MS, "max-bandwidth": QEMU_MAX_BANDWIDTH})
        qs.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        end = time.monotonic() + MIGRATE_S
        while True:
            info = qs.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled") or time.monotonic() > end:
                break
            proc.pump(procs, 0.05)
        if info.get("status") not in ("completed", "failed", "cancelled"):
            raise Failed(f"QEMU's migration did not end within {MIGRATE_S} s (status {info.get('status')})")
        if info.get("status") != "completed":
            raise Failed(f"QEMU's migration {info.get('status')}"
                         + (f": {info['error-desc']}" if info.get("error-desc") else ""))
        r["downtime_ms"], r["total_ms"] = info.get("downtime"), info.get("total-time")
        r["rounds"] = info.get("ram", {}).get("dirty-sync-count")
        r["qemu_info"] = info

        def running():
            return dst.p.poll() is None and qd.cmd("query-status")["status"] == "running"
        r["dest_state_running"] = proc.wait_until(procs, running, DEST_S)
        r["dest_console"] = guest != "dirty" or proc.wait_until(procs, lambda: console_has(dst, "count: "), DEST_S)
        if not (r["dest_state_running"] and r["dest_console"]):
            raise Failed("the guest did not run on at the destination"
                         + ("" if r["dest_console"] else " (no count: line there)"),
                         dst if dst.p.poll() is not None else None)
    except (OSError, ValueError, KeyError) as e:  # QMP gone or garbled
        raise Failed(f"QMP: {e}")
    finally:
        for q in qmps:
            q.close()


def one(ctx, vmm, guest, mem, cmdline, rep):
    r = {"vmm": vmm.name, "guest": guest, "mem_mb": mem, "rep": rep, "cmdline": cmdline}
    procs = []
    work = tempfile.mkdtemp(prefix="vmon-bench-migrate-")  # short: Unix socket paths
    try:
        try:
            if vmm is ctx.vmon:
                vmon_migrate(ctx, guest, mem, cmdline, rep, work, procs, r)
            else:
                qemu_migrate(ctx, vmm, guest, mem, cmdline, rep, work, procs, r)
        finally:
            for pr in procs:
                pr.ask_to_stop()
            proc.watch(procs)
            shutil.rmtree(work, ignore_errors=True)
    except Failed as e:
        r["failure"] = e.what + (f": {why(e.pr)}" if e.pr is not None else "")
    if r.get("failure"):
        say(f"migrate: {vmm.label}: {r['failure']}")
    else:
        say(f"migrate: {vmm.label}: downtime {r['downtime_ms']} ms, total {r['total_ms']} ms, "
            f"{r['rounds']} rounds")
    return r


def run(ctx):
    khz, source = host_tsc_khz()
    reps = 1 if ctx.quick else 3
    sizes = [128] if ctx.quick else [128, 1024]
    runs = []
    for guest in GUESTS:
        cmdline = "console=ttyS0"
        if guest == "dirty":
            cmdline += f" dirty_mib={DIRTY_MIB} dirty_mib_s={DIRTY_MIB_S} tsc_khz={khz}"
        for mem in sizes:
            for rep, vmm in rotations(ctx.vmms(), reps):
                say(f"migrate: {GUEST_LABEL[guest]}, {mem} MiB, on {vmm.label} (rep {rep + 1}/{reps})")
                runs.append(one(ctx, vmm, guest, mem, cmdline, rep))
    return {"target_ms": TARGET_MS, "tsc_khz": khz, "tsc_khz_from": source, "reps": reps, "sizes": sizes,
            "dirty_mib": DIRTY_MIB, "dirty_mib_s": DIRTY_MIB_S, "runs": runs}


def summary(ctx, res):
    """{(guest, mem_mb): {vmm name: {"downtime_ms", "total_ms", "rounds": medians of the runs that
    completed with the guest running on at the destination, "ran_on": how many did} or Cells}}"""
    out = {}
    for guest in GUESTS:
        for mem in res["sizes"]:
            row = {}
            for vmm in ctx.vmms():
                rs = [r for r in res["runs"] if r["vmm"] == vmm.name and r["guest"] == guest and r["mem_mb"] == mem]
                ok = [r for r in rs if not r.get("failure")]
                if ok:
                    row[vmm.name] = {k: median([r.get(k) for r in ok]) for k in ("downtime_ms", "total_ms", "rounds")}
                    row[vmm.name]["ran_on"] = len(ok)
                else:
                    cell = fails(next((r["failure"] for r in rs if r.get("failure")), "no result")) if rs \
                        else not_run("not run")
                    row[vmm.name] = {k: cell for k in ("downtime_ms", "total_ms", "rounds", "ran_on")}
            out[(guest, mem)] = row
    return out
