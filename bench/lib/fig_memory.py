"""Figure 2: VMM memory overhead = resident memory of the VMM process minus the guest
memory actually touched (the Rss of its guest-RAM mapping), peak (VmHWM) and steady (VmRSS
while the guest idles). Taken from figure 1's runs: the default guest idling at its shell
(128 MiB; 1 GiB when not --quick) and the tiny idle guest (128 MiB and 1 GiB)."""
from common import fails, median, not_run


def overhead(mem):
    if not mem:
        return None
    g = mem.get("guest_rss_kb", 0)
    return {"peak_mib": (mem["vmhwm_kb"] - g) / 1024, "steady_mib": (mem["vmrss_kb"] - g) / 1024,
            "guest_touched_mib": g / 1024, "vmrss_mib": mem["vmrss_kb"] / 1024}


def summary(ctx, boot):
    """{(guest, mem_mb): {vmm: {"peak_mib", "steady_mib", ...} or Cell}}"""
    out = {}
    sets = [("linux", 128, boot["linux"]), ("linux", 1024, boot["linux_1g"]),
            ("tiny", 128, boot["tiny"]), ("tiny", 1024, boot["tiny"])]
    for guest, mem_mb, runs in sets:
        row = {}
        for vmm in ctx.vmms():
            rs = [r for r in runs if r["vmm"] == vmm.name and r["mem_mb"] == mem_mb]
            ovs = [overhead(r["mem"]) for r in rs if r.get("mem")]
            if ovs:
                row[vmm.name] = {k: median([o[k] for o in ovs]) for k in ovs[0]}
            elif rs and rs[0].get("failure"):
                row[vmm.name] = fails(rs[0]["failure"])
            elif guest == "linux" and vmm.name in ctx.linux_failures:
                row[vmm.name] = fails(ctx.linux_failures[vmm.name])
            else:
                row[vmm.name] = not_run("1 GiB Linux boots are skipped in --quick" if ctx.quick
                                        and guest == "linux" else "not run")
        out[(guest, mem_mb)] = row
    return out
