"""Figure 9: memory overcommit. What an idle default guest that once touched memory and freed it
costs the host, without a balloon, with free page reporting, and with reporting plus KSM.

N default guests of 256 MiB each (N = 2 with --quick, else 4, capped at half the available
memory) run at once; their /init (appended to the default initramfs) writes 150 MiB to a tmpfs
file, removes it, prints "OVERCOMMIT: freed" and idles ("touch"), or only idles ("idle": the
never-touched baseline, same initramfs, same configuration). Once every guest said so, the figure
waits until the VMs' memory has settled: the sum of their Pss fell by less than 1 MiB per VM over
WINDOW_S (reporting is asynchronous), with KSM also KSM_SCANS full scans of ksmd, or SETTLE_S at
most. Then: host memory per VM (Pss of the VMM process, /proc/PID/smaps_rollup, guest memory
included, summed over the N VMs and divided by N), VMs per GiB, VMs that fit in the memory
available before they started, and touch/idle under the same VMM and configuration.

Configurations:
  plain      vmon as is; QEMU -machine mem-merge=off
  reporting  vmon --balloon (free page reporting is on by default);
             QEMU -device virtio-balloon-pci,free-page-reporting=on -machine mem-merge=off
  ksm        vmon --balloon --memory 256M,merge=on; QEMU the same balloon and -machine mem-merge=on;
             the host's ksmd switched on here (root only) and its settings put back afterwards,
             also on failure and Ctrl-C
QEMU is -M pc with KVM where it boots the default guest, else with TCG (labelled as such; its
translation cache is in its Pss). --quick runs only the ksm configuration (the goal's).
Every VM is stopped when its run ends (and by proc.kill_all at exit)."""
import atexit
import os
import shutil
import subprocess
import tempfile
import time

import fig_boot
import proc
import vmms
from common import fails, not_available, not_run, say

MEM_MB = 256
TOUCH_MB = 150
N_QUICK, N_FULL = 2, 4
BOOT_S = 600        # all N guests print their line (TCG boots N guests on shared cores)
WINDOW_S = 10       # settled: the Pss sum fell by less than 1 MiB per VM over this long
SETTLE_S = 300      # ... or this much time passed
KSM_SCANS = 2       # KSM merges a page on the second scan that finds it unchanged
CONFIGS = [("plain", "no balloon"), ("reporting", "free page reporting"),
           ("ksm", "free page reporting + KSM")]
MODES = ["touch", "idle"]
GOAL = 1.2          # touch/idle with reporting and KSM

INIT = f"""#!/bin/busybox sh
# The memory-overcommit figure's workload (bench/lib/fig_overcommit.py). overcommit=touch on the
# kernel command line: write {TOUCH_MB} MiB to a tmpfs file and remove it; otherwise touch nothing.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
$B mkdir -p /scratch
$B mount -t tmpfs -o size={TOUCH_MB + 50}m tmpfs /scratch
memfree() {{ $B awk '$1 == "MemFree:" {{ print $2 }}' /proc/meminfo; }}
echo "OVERCOMMIT: up memfree_kb=$(memfree)"
case " $($B cat /proc/cmdline) " in
*" overcommit=touch "*)
	$B dd if=/dev/zero of=/scratch/fill bs=1M count={TOUCH_MB} 2>/dev/null
	echo "OVERCOMMIT: touched memfree_kb=$(memfree)"
	$B rm /scratch/fill
	echo "OVERCOMMIT: freed memfree_kb=$(memfree)"
	;;
*)
	echo "OVERCOMMIT: idle, never touched memfree_kb=$(memfree)"
	;;
esac
while :; do $B sleep 3600; done
"""
MARKERS = {"up": "OVERCOMMIT: up", "ready_touch": "OVERCOMMIT: freed",
           "ready_idle": "OVERCOMMIT: idle, never touched"}


class Ksm:
    """The host's ksmd: switched on for the ksm configuration, every setting put back after it."""
    DIR = "/sys/kernel/mm/ksm"
    ON = [("pages_to_scan", "10000"), ("sleep_millisecs", "10"), ("run", "1")]

    def __init__(self):
        self.saved = None

    def unavailable(self):
        if not os.path.exists(os.path.join(self.DIR, "run")):
            return f"this host's kernel has no KSM ({self.DIR})"
        if os.geteuid() != 0:
            return f"switching the host's KSM on needs root ({self.DIR}/run)"
        return None

    def read(self, key):
        with open(os.path.join(self.DIR, key)) as f:
            return f.read().strip()

    def write(self, key, value):
        with open(os.path.join(self.DIR, key), "w") as f:
            f.write(value)

    def on(self):
        if self.saved is None:
            self.saved = {k: self.read(k) for k, _ in self.ON}
            atexit.register(self.restore)
            say(f"overcommit: ksmd on (was {self.saved}); put back afterwards")
        for k, v in self.ON:
            self.write(k, v)

    def restore(self):
        if self.saved is not None:
            for k, _ in self.ON:  # "run" last
                self.write(k, self.saved[k])
            say(f"overcommit: ksmd settings put back ({self.saved})")
            self.saved = None

    def full_scans(self):
        try:
            return int(self.read("full_scans"))
        except (OSError, ValueError):
            return 0


def initrd(ctx):
    """The default initramfs with the workload's /init appended, or None."""
    with tempfile.TemporaryDirectory() as stage:
        with open(os.path.join(stage, "init"), "w") as f:
            f.write(INIT)
        os.chmod(os.path.join(stage, "init"), 0o755)
        extra = subprocess.run(["cpio", "-o", "-H", "newc"], input=b"init\n", cwd=stage, capture_output=True)
    if extra.returncode != 0:
        return None
    os.makedirs(ctx.bench_build, exist_ok=True)
    out = os.path.join(ctx.bench_build, "overcommit-initrd.cpio")
    with open(out, "wb") as f, open(ctx.guest["initrd"], "rb") as base:
        shutil.copyfileobj(base, f)
        f.write(extra.stdout)
    return out


def command(ctx, vmm, cfg, mode, initrd_path):
    cmdline = f"{fig_boot.LINUX_CMDLINE} overcommit={mode}"
    if vmm is not ctx.vmon and ctx.vmon_extra_cmdline:
        cmdline += " " + ctx.vmon_extra_cmdline  # the guest gets vmon's additions from every VMM
    c = [str(x) for x in vmm.cmd(ctx.guest["kernel"], initrd_path, cmdline, 1, MEM_MB)]
    if isinstance(vmm, vmms.Vmon):
        if cfg != "plain":
            c += ["--balloon"]
        if cfg == "ksm":
            c[c.index("--memory") + 1] += ",merge=on"
    else:
        if cfg != "plain":
            c += ["-device", "virtio-balloon-pci,free-page-reporting=on"]
        c += ["-machine", "mem-merge=" + ("on" if cfg == "ksm" else "off")]
    return c


def wait_ready(procs, marker, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        proc.pump(procs, 0.2)
        if all(marker in pr.marks for pr in procs):
            return True
        if any(pr.failure or (pr.p.poll() is not None and marker not in pr.marks) for pr in procs):
            return False
    return False


def settle(procs, ksm, r):
    """Waits until the VMs' memory stops falling; fills r, returns False if a VM went away."""
    n, t0 = len(procs), time.monotonic()
    scans0 = ksm.full_scans() if ksm else 0
    samples = []
    while True:
        proc.pump(procs, 1.0)
        each = [proc.pss_kb(pr.p.pid) for pr in procs]
        if None in each:
            return False
        t = time.monotonic() - t0
        samples.append((t, sum(each)))
        before = [s for s in samples if s[0] <= t - WINDOW_S]
        scans = ksm.full_scans() - scans0 if ksm else None
        stable = before and before[-1][1] - sum(each) < n * 1024 and (scans is None or scans >= KSM_SCANS)
        if stable or t >= SETTLE_S:
            break
    r.update({"settle_s": t, "settled": bool(stable), "ksm_full_scans": scans,
              "pss_each_mib": [round(v / 1024, 1) for v in each], "pss_mib": sum(each) / n / 1024,
              "samples": [(round(s, 1), round(v / n / 1024, 1)) for s, v in samples]})
    r["vms_per_gib"] = 1024 / r["pss_mib"]
    r["fit"] = int(r["mem_available_mib"] / r["pss_mib"])
    return True


def one(ctx, vmm, cfg, mode, n, initrd_path, ksm):
    """N VMs of one VMM, configuration and workload mode, started at once and measured."""
    r = {"vmm": vmm.name, "col": "vmon" if vmm is ctx.vmon else "qemu", "label": vmm.label, "config": cfg,
         "mode": mode, "n": n, "mem_mb": MEM_MB, "mem_available_mib": proc.mem_available_kb() / 1024}
    cmd = command(ctx, vmm, cfg, mode, initrd_path)
    r["cmd"] = " ".join(cmd)
    procs = [proc.Proc(f"{vmm.name}-{i}", cmd, markers=MARKERS, timeout=24 * 3600,
                       log_path=ctx.log_path("overcommit", vmm.name, cfg, mode, i)) for i in range(n)]
    marker = "ready_" + mode
    ok = False
    early = []  # the VMs that stopped on their own (they tell why)
    try:
        t0 = time.monotonic()
        for pr in procs:
            pr.start()
        if wait_ready(procs, marker, BOOT_S):
            r["ready_s"] = max(pr.marks[marker] for pr in procs)
            ok = settle(procs, ksm, r)
        waited = time.monotonic() - t0
        early = [pr for pr in procs if pr.failure or pr.p.poll() is not None]
    finally:
        for pr in procs:
            pr.ask_to_stop()
        proc.watch(procs)
    if vmm is ctx.vmon:
        for _, s, text in procs[0].lines:
            if s == "err" and "adding kernel options: " in text:
                ctx.vmon_extra_cmdline = text.split("adding kernel options: ", 1)[1].strip()
    if not ok:
        why = next((vmms.describe_failure(pr) for pr in early if vmms.describe_failure(pr)), None)
        if why is None and early:
            why = f"a VM stopped (exit status {early[0].rc}) " + \
                ("while its memory settled" if marker in early[0].marks else "before its line")
        r["failure"] = why or f"no \"{MARKERS[marker]}\" line on all {n} VMs after {waited:.0f} s"
    return r


def qemu_options(vmm):
    """Why QEMU cannot run the balloon configurations, or None."""
    try:
        dev = subprocess.run([vmms.QEMU, "-device", "virtio-balloon-pci,help"], capture_output=True,
                             text=True, timeout=30).stdout
        mach = subprocess.run([vmms.QEMU, "-machine", f"{vmm.machine},help"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot ask QEMU for its options: {e}"
    if "free-page-reporting" not in dev:
        return "this QEMU's virtio-balloon-pci has no free-page-reporting"
    if "mem-merge" not in mach:
        return "this QEMU has no -machine mem-merge"
    return None


def run(ctx):
    if ctx.guest is None:
        return {"available": False, "reason": "the default guest is not built"}
    path = initrd(ctx)
    if path is None:
        return {"available": False, "reason": "could not build the workload's initramfs (cpio)"}
    want = N_QUICK if ctx.quick else N_FULL
    n = max(1, min(want, int(proc.mem_available_kb() / 1024 / 2 // MEM_MB)))
    ksm = Ksm()
    help_text = ctx.vmon.help_text()
    qemu = None
    if ctx.qemus:
        qemu = vmms.Qemu("pc", accel="tcg" if "qemu-pc" in ctx.linux_failures else "kvm")
    out = {"available": True, "n": n, "mem_mb": MEM_MB, "touch_mb": TOUCH_MB, "window_s": WINDOW_S,
           "settle_max_s": SETTLE_S, "ksm_scans": KSM_SCANS, "quick": ctx.quick, "runs": [], "skipped": [],
           "qemu": qemu.name if qemu else None}
    if qemu and qemu.accel == "tcg":
        out["qemu_kvm_failure"] = ctx.linux_failures["qemu-pc"]
    qemu_missing = qemu_options(qemu) if qemu else None

    def skip(vmm, cfg, cell):
        for mode in MODES:
            out["skipped"].append({"col": "vmon" if vmm is ctx.vmon else "qemu", "config": cfg, "mode": mode,
                                   "cell": cell})

    for i, (cfg, label) in enumerate(CONFIGS):
        vmm_list = [ctx.vmon] + ([qemu] if qemu else [])
        vmm_list = vmm_list[i % len(vmm_list):] + vmm_list[:i % len(vmm_list)]
        if ctx.quick and cfg != "ksm":
            for v in vmm_list:
                skip(v, cfg, not_run("not run with --quick (only the goal's configuration)"))
            continue
        if cfg == "ksm" and ksm.unavailable():
            for v in vmm_list:
                skip(v, cfg, not_available(ksm.unavailable()))
            continue
        try:
            if cfg == "ksm":
                ksm.on()
            for vmm in vmm_list:
                if vmm is ctx.vmon and cfg != "plain" and ("--balloon" not in help_text
                                                           or (cfg == "ksm" and "merge=on" not in help_text)):
                    skip(vmm, cfg, not_available("vmon run has no --balloon" if "--balloon" not in help_text
                                                      else "vmon run has no --memory SIZE,merge=on"))
                    continue
                if vmm is not ctx.vmon and cfg != "plain" and qemu_missing:
                    skip(vmm, cfg, not_available(qemu_missing))
                    continue
                for mode in MODES:
                    say(f"overcommit: {n} default guests ({mode}) on {vmm.label}, {label} "
                        f"(elapsed {ctx.elapsed():.0f} s)")
                    r = one(ctx, vmm, cfg, mode, n, path, ksm if cfg == "ksm" else None)
                    if r.get("failure") and vmm is qemu and qemu.accel == "kvm" and \
                            not any(x["col"] == "qemu" and not x.get("failure") for x in out["runs"]):
                        # QEMU with KVM cannot boot the default guest here: TCG from here on.
                        ctx.linux_failures.setdefault("qemu-pc", r["failure"])
                        say(f"overcommit: {qemu.label} did not boot the default guest ({r['failure']}); "
                            "QEMU with TCG from here on")
                        out["qemu_kvm_failure"] = r["failure"]
                        qemu = vmm = vmms.Qemu("pc", accel="tcg")
                        out["qemu"] = qemu.name
                        r = one(ctx, vmm, cfg, mode, n, path, ksm if cfg == "ksm" else None)
                    out["runs"].append(r)
                    if r.get("failure"):
                        say(f"overcommit: {vmm.label}: {r['failure']}")
                    else:
                        say(f"overcommit: {vmm.label}, {label}, {mode}: {r['pss_mib']:.1f} MiB per VM, "
                            f"settled after {r['settle_s']:.0f} s" + ("" if r["settled"] else " (bound)"))
        finally:
            ksm.restore()
    return out


def summary(res):
    """{config: {mode or "ratio": {"vmon" or "qemu": run dict or Cell or ratio}}}."""
    s = {cfg: {m: {} for m in MODES + ["ratio"]} for cfg, _ in CONFIGS}
    for r in res["runs"]:
        s[r["config"]][r["mode"]][r["col"]] = fails(r["failure"]) if r.get("failure") else r
    for k in res["skipped"]:
        s[k["config"]][k["mode"]][k["col"]] = k["cell"]
    for cfg, row in s.items():
        for name, t in row["touch"].items():
            i = row["idle"].get(name)
            if isinstance(t, dict) and isinstance(i, dict):
                row["ratio"][name] = t["pss_mib"] / i["pss_mib"]
            else:
                row["ratio"][name] = t if not isinstance(t, dict) else i
    return s


def table(t, ctx, res):
    if not res:
        return
    if not res.get("available"):
        t.section("9. Memory overcommit")
        t.row("all", {"vmon": not_available(res["reason"])})
        return
    s = summary(res)
    res["summary"] = {cfg: {k: {n: (v["pss_mib"] if isinstance(v, dict) else v) for n, v in row.items()}
                            for k, row in rows.items()} for cfg, rows in s.items()}
    qname = res.get("qemu")
    tcg = qname is not None and qname.endswith("-tcg")
    t.section(f"9. Memory overcommit: {res['n']} default guests of {res['mem_mb']} MiB at once, idle after "
              f"touching {res['touch_mb']} MiB and freeing it, settled (host memory: Pss of the VMM)"
              + (" [QEMU -M pc with TCG: KVM cannot boot the default guest here]" if tcg else ""))

    def put(label, vals, fmt=lambda v: v):
        vals = {n: (fmt(v) if isinstance(v, (int, float)) else v) for n, v in vals.items()}
        if tcg:
            t.row(label, {"vmon": vals.get("vmon")}, other=vals.get("qemu"), other_label="QEMU pc TCG")
        else:
            t.row(label, {"vmon": vals.get("vmon"), "qemu-pc": vals.get("qemu")})

    def field(row, key):
        return {n: (v[key] if isinstance(v, dict) else v) for n, v in row.items()}

    for cfg, label in CONFIGS:
        row = s[cfg]
        if not any(isinstance(v, dict) for m in MODES for v in row[m].values()):
            put(f"{label}: MiB per VM", {n: v for n, v in row["touch"].items()})  # why there is none
            continue
        put(f"{label}: freed {res['touch_mb']} MiB, MiB per VM", field(row["touch"], "pss_mib"))
        put(f"{label}: never touched, MiB per VM", field(row["idle"], "pss_mib"))
        put(f"{label}: freed / never touched" + (f" (goal <= {GOAL})" if cfg == "ksm" else ""), row["ratio"])
        put(f"{label}: freed, VMs per GiB", field(row["touch"], "vms_per_gib"))
        put(f"{label}: freed, VMs that fit in available memory", field(row["touch"], "fit"))
        put(f"{label}: freed, settled after (s)", field(row["touch"], "settle_s"))
        if tcg:
            v, q = field(row["touch"], "pss_mib").get("vmon"), field(row["touch"], "pss_mib").get("qemu")
            if isinstance(v, (int, float)) and isinstance(q, (int, float)):
                t.row(f"{label}: freed, vmon / QEMU TCG memory per VM", {"vmon": v / q})
    if res.get("qemu_kvm_failure"):
        t.row("QEMU -M pc with KVM", {"qemu-pc": fails(res["qemu_kvm_failure"])})
