"""Figure 1: boot time, and (from the same runs) figure 2's memory of an idle guest.

Default guest (Linux + busybox initramfs), command line "console=ttyS0" so that /init ends
at an idle shell. Milestones, in seconds from spawning the VMM:
  setup      vmon only: its last set-up log line ("boot: ..."), just before the vCPUs start
  first_byte first byte on the guest console (for QEMU -M pc: SeaBIOS's banner)
  banner     the kernel's first console line ("Linux version")
  init       /init runs ("VMON-INIT: started")
  idle       the shell is up ("Welcome to ..."); memory is sampled a second later.
A tiny test guest (tests/guests/idle.c + PVH note) gives "first guest output", the closest
outside view of the first guest instruction for every VMM (firmware included).
"""
import re

import proc
import vmms
from common import fails, median, not_run, rotations, say

LINUX_MARKERS = {
    "setup_loaded": "boot: loaded",
    "setup_options": "boot: this host's KVM cannot run some instructions",
    "banner": "Linux version",
    "init": "VMON-INIT: started",
    "idle": "Welcome to the vmon default guest",
}
LINUX_CMDLINE = "console=ttyS0"
MILESTONES = ["first_output_tiny", "setup", "first_byte", "banner", "init", "idle"]


def linux_proc(ctx, vmm, mem_mb, cpus, timeout, tag, kernel=None, initrd=None, cmdline=None):
    kernel = kernel or ctx.guest["kernel"]
    initrd = initrd or ctx.guest["initrd"]
    cmdline = cmdline or LINUX_CMDLINE
    if vmm is not ctx.vmon and ctx.vmon_extra_cmdline:
        # The guest gets the same command line from every VMM: vmon's own additions included.
        cmdline = f"{cmdline} {ctx.vmon_extra_cmdline}"
    pr = proc.Proc(vmm.name, vmm.cmd(kernel, initrd, cmdline, cpus, mem_mb), markers=LINUX_MARKERS,
                   stop_on="idle", grace=1.5, mem_after="idle", mem_delay=1.0,
                   ram_match=vmm.ram_match(mem_mb), timeout=timeout,
                   log_path=ctx.log_path("boot", vmm.name, mem_mb, tag))
    pr.bench = {"vmm": vmm, "mem_mb": mem_mb, "cpus": cpus, "cmdline": cmdline}
    return pr


def linux_result(ctx, pr):
    vmm = pr.bench["vmm"]
    if vmm is ctx.vmon:
        for _, s, text in pr.lines:
            m = re.search(r"adding kernel options: (.*)$", text)
            if s == "err" and m:
                ctx.vmon_extra_cmdline = m.group(1).strip()
    r = {"vmm": vmm.name, "mem_mb": pr.bench["mem_mb"], "cpus": pr.bench["cpus"],
         "cmdline": pr.bench["cmdline"], "rc": pr.rc, "first_byte": pr.first_byte.get("out"),
         "mem": pr.mem}
    for k in ("banner", "init", "idle"):
        r[k] = pr.marks.get(k)
    setup = [pr.marks[k] for k in ("setup_loaded", "setup_options") if k in pr.marks]
    r["setup"] = max(setup) if setup else None
    why = vmms.describe_failure(pr)
    if r["idle"] is None:
        r["failure"] = why or (f"no /init after {pr.end:.0f} s" if r["init"] is None else "no shell")
        if ctx.quick and vmm is not ctx.vmon and "timed out" in r["failure"]:
            r["failure"] += " (--quick gives QEMU 60 s; the full run shows where it stops)"
    return r


def linux_run(ctx, vmm, mem_mb, cpus, timeout, tag, **kw):
    pr = proc.run_proc(linux_proc(ctx, vmm, mem_mb, cpus, timeout, tag, **kw))
    return linux_result(ctx, pr)


def tiny_run(ctx, vmm, mem_mb, tag):
    pr = proc.run(vmm.name, vmm.cmd(ctx.guest_elf("idle"), None, "console=ttyS0", 1, mem_mb),
                  markers={"guest": "idle guest sleeping"}, stop_on="guest", grace=0.8,
                  mem_after="guest", mem_delay=0.5, ram_match=vmm.ram_match(mem_mb), timeout=60,
                  log_path=ctx.log_path("tiny", vmm.name, mem_mb, tag))
    r = {"vmm": vmm.name, "mem_mb": mem_mb, "first_byte": pr.first_byte.get("out"),
         "first_output": pr.marks.get("guest"), "mem": pr.mem}
    if r["first_output"] is None:
        r["failure"] = vmms.describe_failure(pr) or "the tiny guest printed nothing"
    return r


def run(ctx):
    a = ctx.args
    reps = 1 if ctx.quick else 3
    out = {"linux": [], "tiny": [], "linux_1g": [], "tcg": []}

    # Tiny guest first: cheap, and it shows whether each VMM can run anything at all.
    for rep, vmm in rotations(ctx.vmms(), reps):
        for mem in (128, 1024):
            say(f"boot: tiny guest on {vmm.label}, {mem} MiB (rep {rep + 1}/{reps})")
            out["tiny"].append(tiny_run(ctx, vmm, mem, rep))

    if ctx.guest is None:
        return out
    # QEMU's KVM boots that fail do so deterministically and slowly (minutes of emulated
    # CPL0 code here): one attempt each; repeat only those that reached the shell. With
    # --quick the first attempts of the QEMU machines run side by side to save time (their
    # times are then only indicative; the note says so), and get 60 s: plenty where KVM is
    # hardware, while on an emulating host the failure (about 130 s in) is left to the full run.
    qemu_timeout = 60 if ctx.quick else 400
    vmon_timeout = 300 if ctx.quick else 900

    def record(r, parallel=False):
        if parallel and r.get("failure"):
            r["failure"] += " (two QEMUs run side by side in --quick)"
        out["linux"].append(r)
        if r.get("failure"):
            ctx.linux_failures[r["vmm"]] = r["failure"]
            say(f"boot: {r['vmm']} did not boot the default guest: {r['failure']}")

    say(f"boot: default guest on vmon, 128 MiB (rep 1/{reps}, elapsed {ctx.elapsed():.0f} s)")
    record(linux_run(ctx, ctx.vmon, 128, a.cpus, vmon_timeout, 0))
    if ctx.quick and ctx.qemus:
        say("boot: default guest on " + " and ".join(q.label for q in ctx.qemus) + " at once, 128 MiB")
        procs = [linux_proc(ctx, q, 128, a.cpus, qemu_timeout, 0) for q in ctx.qemus]
        for pr in proc.watch([p.start() for p in procs]):
            record(linux_result(ctx, pr), parallel=len(procs) > 1)
    for rep, vmm in rotations(ctx.vmms(), reps):
        if vmm.name in ctx.linux_failures or (rep == 0 and (vmm is ctx.vmon or ctx.quick)):
            continue
        if vmm is not ctx.vmon and rep > 0 and not any(r["vmm"] == vmm.name for r in out["linux"]):
            continue
        say(f"boot: default guest on {vmm.label}, 128 MiB (rep {rep + 1}/{reps}, elapsed {ctx.elapsed():.0f} s)")
        record(linux_run(ctx, vmm, 128, a.cpus, vmon_timeout if vmm is ctx.vmon else qemu_timeout, rep))

    # Reference point where KVM fails: QEMU's own emulator (TCG), labelled as such.
    if any(q.name in ctx.linux_failures for q in ctx.qemus):
        tcg = vmms.Qemu("pc", accel="tcg")
        for rep in range(reps):
            # Under TCG on a loaded host the guest's timer calibration can go wrong now and
            # then: one more try before reporting a failure.
            for attempt in range(2):
                say(f"boot: default guest on {tcg.label} (rep {rep + 1}/{reps}, attempt {attempt + 1})")
                r = linux_run(ctx, tcg, 128, a.cpus, 30, f"{rep}-{attempt}")
                if not r.get("failure"):
                    break
            out["tcg"].append(r)

    # 1 GiB: the memory figure's second size.
    if not ctx.quick:
        for rep, vmm in rotations(ctx.vmms(), 1 if ctx.quick else 2):
            if vmm.name in ctx.linux_failures:
                continue
            say(f"boot: default guest on {vmm.label}, 1 GiB (rep {rep + 1})")
            out["linux_1g"].append(linux_run(ctx, vmm, 1024, a.cpus, vmon_timeout, f"1g-{rep}"))
    return out


def summary(ctx, res):
    """{vmm name: {milestone: median seconds or Cell}} for the table and the chart."""
    names = [v.name for v in ctx.vmms()] + (["qemu-pc-tcg"] if res.get("tcg") else [])
    s = {}
    for name in names:
        runs = [r for r in res["linux"] + res.get("tcg", []) if r["vmm"] == name]
        tiny = [r for r in res["tiny"] if r["vmm"] == name and r["mem_mb"] == 128]
        row = {}
        t = median([r["first_output"] for r in tiny])
        row["first_output_tiny"] = t if t is not None else (
            fails(tiny[0]["failure"]) if tiny else not_run("tiny guests are not run with TCG"))
        for k in ("setup", "first_byte", "banner", "init", "idle"):
            v = median([r[k] for r in runs])
            if v is None and runs and runs[0].get("failure") and k != "setup":
                reached = [r[k] for r in runs if r[k] is not None]
                v = fails(runs[0]["failure"]) if not reached else v
            if v is None and not runs:
                v = not_run("no default guest" if ctx.guest is None else "not run")
            row[k] = v
        s[name] = row
    return s
