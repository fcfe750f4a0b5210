"""Figure 10: what confinement costs vmon. The same vmon, confined as it runs by default (a
seccomp filter per thread, Landlock, no capabilities) and with `--seccomp off --landlock off`,
alternating: the tiny idle guest's first output from spawning vmon (start-up, which includes
building and installing the filters) and the exit round trip of figure 3 (bench/guests/exits.c:
port I/O and MMIO at CPL0 and CPL3), whose every exit crosses the vCPU thread's filter on the
system calls it makes. vmon only: the question is vmon's own overhead."""
import fig_boot
import fig_exits
import vmms
from common import fails, median, rotations, say

UNCONFINED = ["--seccomp", "off", "--landlock", "off"]
UNCONFINED_LABEL = "vmon --seccomp off --landlock off"


def variants(ctx):
    return [ctx.vmon, vmms.Vmon(ctx.vmon.binary, UNCONFINED, "vmon-unconfined", UNCONFINED_LABEL)]


def supported(ctx):
    text = ctx.vmon.help_text()
    return "--seccomp" in text and "--landlock" in text


def run(ctx):
    if not supported(ctx):
        return {"available": False, "reason": "vmon run has no --seccomp/--landlock options"}
    reps = 1 if ctx.quick else 5
    n = 4000 if ctx.quick else 20000
    out = {"available": True, "n": n, "start": [], "exits": []}
    for rep, vmm in rotations(variants(ctx), reps):
        say(f"confinement: tiny guest start-up and {n} exits of each kind on {vmm.label} (rep {rep + 1}/{reps})")
        out["start"].append(fig_boot.tiny_run(ctx, vmm, 128, f"confinement-{rep}"))
        out["exits"].append(fig_exits.vmm_run(ctx, vmm, n, f"confinement-{rep}"))
    return out


def summary(ctx, res):
    """{variant name: {"start": s, kind: ns per exit}}, medians or Cells."""
    s = {}
    for vmm in variants(ctx):
        starts = [r for r in res["start"] if r["vmm"] == vmm.name]
        exits = [r for r in res["exits"] if r["vmm"] == vmm.name]
        v = median([r["first_output"] for r in starts])
        row = {"start": v if v is not None else fails(next((r["failure"] for r in starts if r.get("failure")),
                                                          "no result"))}
        for kind in fig_exits.KINDS:
            v = median([r["ns"].get(kind) for r in exits])
            row[kind] = v if v is not None else fails(next((r["failure"] for r in exits if r.get("failure")),
                                                           "no result"))
        s[vmm.name] = row
    return s


def table(t, ctx, res):
    if not res.get("available"):
        return
    s = summary(ctx, res)
    res["summary"] = s
    on, off = s["vmon"], s["vmon-unconfined"]
    t.section("10. Cost of confinement: vmon as it runs (seccomp, Landlock) vs --seccomp off --landlock off (median)")
    t.row("tiny guest, first output (s)", {"vmon": on["start"]}, other=off["start"], other_label="unconfined")
    for kind in fig_exits.KINDS:
        a, b = on[kind], off[kind]
        t.row(f"exit round trip, {fig_exits.KIND_LABEL[kind]} (us)",
              {"vmon": a / 1000 if isinstance(a, float) else a},
              other=b / 1000 if isinstance(b, float) else b, other_label="unconfined")
