"""Figure 5: VM start rate and density.

K VMs are started at once; the start rate is K divided by the time until the last one
reached its marker. Density is how many such VMs fit in the memory available before they
started: MemAvailable / mean proportional set size (Pss: shared pages split between VMs) of
one idle VM, guest memory it touched included. Two guests:
  tiny   tests/guests/idle.c (prints a line and halts): every VMM, K = 4 (--quick) or 16
  linux  the default guest idling at its shell: each VMM that boots it, K = 8 (not with --quick:
         it would take --quick past its 5 minutes where the guest kernel is emulated)
Every VM started here is killed before this returns (and by proc.kill_all at exit)."""
import threading

import proc
from common import median, rotations, say

def start_many(ctx, vmm, k, kernel, initrd, cmdline, mem_mb, marker, idle_marker, timeout, tag):
    procs = []
    for i in range(k):
        pr = proc.Proc(f"{vmm.name}-{i}", vmm.cmd(kernel, initrd, cmdline, 1, mem_mb),
                       markers={"up": marker, "idle": idle_marker}, mem_after="idle",
                       mem_delay=1.0, ram_match=vmm.ram_match(mem_mb), timeout=timeout,
                       log_path=ctx.log_path("density", tag, vmm.name, i))
        procs.append(pr)
    avail = proc.mem_available_kb()
    t0 = proc.now()
    for pr in procs:
        pr.start()
    # Stop them all once every one is up and measured (or the time is over).
    def stopper():
        while any(pr.rc is None for pr in procs):
            if all(pr.mem is not None or pr.rc is not None for pr in procs):
                for pr in procs:
                    pr.terminate()
                return
            threading.Event().wait(0.2)

    th = threading.Thread(target=stopper, daemon=True)
    th.start()
    proc.watch(procs)
    th.join(timeout=1)
    ups = [pr.t0 - t0 + pr.marks["up"] for pr in procs if "up" in pr.marks]
    pss = [pr.mem["pss_kb"] for pr in procs if pr.mem]
    r = {"vmm": vmm.name, "guest": tag, "k": k, "mem_mb": mem_mb, "up": len(ups),
         "mem_available_mib": avail / 1024}
    if ups:
        r["last_up_s"] = max(ups)
        r["rate_per_s"] = len(ups) / max(ups)
    if pss:
        r["pss_mib"] = median(pss) / 1024
        r["fit"] = int(avail / median(pss))
    if len(ups) < k:
        r["failure"] = f"{k - len(ups)} of {k} VMs did not start within {timeout:.0f} s"
    return r


def capped(k, mem_mb):
    # Never ask for more than half of the available memory, whatever the guests touch.
    room = proc.mem_available_kb() / 1024 / 2
    return max(1, min(k, int(room // mem_mb)))


def run(ctx):
    out = []
    k_tiny = 4 if ctx.quick else 16
    for _, vmm in rotations(ctx.vmms(), 1):
        k = capped(k_tiny, 128)
        say(f"density: {k} tiny idle guests at once on {vmm.label}")
        out.append(start_many(ctx, vmm, k, ctx.guest_elf("idle"), None, "console=ttyS0", 128,
                              "idle guest sleeping", "idle guest sleeping", 60, "tiny"))
    if ctx.guest and not ctx.quick:
        k_linux = 8
        for vmm in ctx.vmms():
            if vmm.name in ctx.linux_failures:
                continue
            k = capped(k_linux, 128)
            say(f"density: {k} default guests at once on {vmm.label} (elapsed {ctx.elapsed():.0f} s)")
            out.append(start_many(ctx, vmm, k, ctx.guest["kernel"], ctx.guest["initrd"],
                                  "console=ttyS0", 128, "VMON-INIT: started", "Welcome to the vmon default guest",
                                  120 if ctx.quick else 600, "linux"))
    return out
