"""Figure 3: exit cost. bench/guests/exits.c makes N port-I/O writes to an unclaimed port and
N MMIO writes to an unmapped address, at CPL0 and at CPL3; the host times each batch from the
arrival of its "B <kind>" console line to that of the "E" line after it. The floor is
build/bench/kvm_floor: the same loop under a VMM that does nothing but call KVM_RUN again."""
import re
import subprocess

import proc
import vmms
from common import fails, median, rotations, say

KINDS = ["pio0", "mmio0", "pio3", "mmio3"]
KIND_LABEL = {"pio0": "port I/O, CPL0", "mmio0": "MMIO, CPL0", "pio3": "port I/O, CPL3", "mmio3": "MMIO, CPL3"}


def parse_batches(pr, n):
    """{kind: ns per exit} from the guest's B/E lines."""
    out, begin = {}, None
    for t, stream, text in pr.lines:
        if stream != "out":
            continue
        m = re.search(r"\bB (\w+)$", text)
        if m:
            begin = (m.group(1), t)
        elif text.endswith("E") and text.strip() in ("E",) and begin:
            out[begin[0]] = (t - begin[1]) * 1e9 / n
            begin = None
    return out


def vmm_run(ctx, vmm, n, rep):
    pr = proc.run(vmm.name, vmm.cmd(ctx.guest_elf("exits"), None, f"exits.n={n}", 1, 128),
                  markers={"done": "EXITS: done"}, stop_on="done", grace=1.0, timeout=120,
                  log_path=ctx.log_path("exits", vmm.name, rep))
    got = parse_batches(pr, n)
    r = {"vmm": vmm.name, "rep": rep, "ns": got}
    if len(got) < len(KINDS):
        r["failure"] = vmms.describe_failure(pr) or f"the guest stopped after {sorted(got)}"
    return r


def floor_run(ctx, n, rep):
    got, failure = {}, None
    for kind in KINDS:
        what = "mmio" if kind.startswith("mmio") else "pio"
        cpl = "cpl3" if kind.endswith("3") else "cpl0"
        try:
            p = subprocess.run([ctx.bench_build + "/kvm_floor", what, cpl, str(n)], capture_output=True,
                               text=True, timeout=120)
        except subprocess.TimeoutExpired:
            failure = f"{kind}: timed out"
            continue
        m = re.search(r"ns_per_exit=([\d.]+)", p.stdout)
        if m:
            got[kind] = float(m.group(1))
        else:
            failure = f"{kind}: {(p.stderr.strip() or 'no result')[:100]}"
    r = {"vmm": "floor", "rep": rep, "ns": got}
    if failure:
        r["failure"] = failure
    return r


def run(ctx):
    n = 4000 if ctx.quick else 20000
    reps = 1 if ctx.quick else 5
    runs = []
    for rep, who in rotations(ctx.vmms() + ["floor"], reps):
        label = "the bare KVM_RUN loop" if who == "floor" else who.label
        say(f"exits: {n} exits of each kind on {label} (rep {rep + 1}/{reps})")
        runs.append(floor_run(ctx, n, rep) if who == "floor" else vmm_run(ctx, who, n, rep))
    return {"n": n, "runs": runs}


def summary(ctx, res):
    """{vmm name: {kind: median ns or Cell}}"""
    s = {}
    for name in [v.name for v in ctx.vmms()] + ["floor"]:
        runs = [r for r in res["runs"] if r["vmm"] == name]
        row = {}
        for kind in KINDS:
            v = median([r["ns"].get(kind) for r in runs])
            row[kind] = v if v is not None else fails(next((r["failure"] for r in runs if r.get("failure")),
                                                       "no result"))
        s[name] = row
    return s
