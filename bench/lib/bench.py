"""vmon against QEMU, side by side, in one run. Started by bench/run, which installs what is
missing and builds the helpers; see bench/README.md for what each figure means."""
import argparse
import atexit
import datetime
import os
import platform
import signal
import subprocess
import sys

import fig_blk
import fig_boot
import fig_clone
import fig_confinement
import fig_density
import fig_exits
import fig_memory
import fig_migrate
import fig_overcommit
import fig_snapshot
import proc
import report
import vmms
from common import Context, fails, not_available, not_run, say


# Figures after the boot figure (which also boots Debian's kernel when asked), in the order they run.
FIGURES = [("exits", fig_exits), ("blk", fig_blk), ("density", fig_density), ("snapshot", fig_snapshot),
           ("migrate", fig_migrate), ("clone", fig_clone), ("overcommit", fig_overcommit),
           ("confinement", fig_confinement)]


def parse_args():
    p = argparse.ArgumentParser(prog="bench/run", description="Benchmarks vmon against QEMU.")
    p.add_argument("--quick", action="store_true", help="one repetition, fewer VMs (under 5 minutes)")
    p.add_argument("--debian-kernel", action="store_true",
                   help="also boot Debian's stock cloud kernel once (slow where KVM is software-virtualized)")
    p.add_argument("--cpus", type=int, default=1, help="vCPUs of the default guest (default 1)")
    p.add_argument("--only", default="", help="comma-separated figures to run: "
                   "boot,exits,blk,density,snapshot,migrate,clone,overcommit,confinement")
    p.add_argument("--root", required=True, help=argparse.SUPPRESS)
    p.add_argument("--vmon", required=True, help=argparse.SUPPRESS)
    p.add_argument("--guest-env", default="", help=argparse.SUPPRESS)
    p.add_argument("--debian-kernel-path", default="", help=argparse.SUPPRESS)
    return p.parse_args()


def guest_from_env(text):
    env = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    if "GUEST_KERNEL" in env and os.path.exists(env["GUEST_KERNEL"]):
        return {"kernel": env["GUEST_KERNEL"], "initrd": env["GUEST_INITRD"]}
    return None


def build_table(ctx, res):
    t = report.Table()
    boot = res.get("boot")
    if boot:
        bs = fig_boot.summary(ctx, boot)
        tcg = bs.get("qemu-pc-tcg")
        t.section("1. Boot, default guest, 128 MiB, 1 vCPU (s from process start; median)")
        labels = {"first_output_tiny": "first guest output (tiny guest)",
                  "setup": "vmon set-up done (vCPUs start)",
                  "first_byte": "first console byte",
                  "banner": "kernel banner (\"Linux version\")",
                  "init": "/init runs (VMON-INIT)",
                  "idle": "shell ready"}
        for k in fig_boot.MILESTONES:
            vals = {n: bs[n][k] for n in bs if n != "qemu-pc-tcg"}
            if k == "setup":
                vals = {"vmon": vals.get("vmon")}
            t.row(labels[k], vals, other=tcg[k] if tcg and k != "first_output_tiny" and k != "setup" else None,
                  other_label="QEMU TCG")
        if res.get("debian"):
            d = res["debian"]
            t.row("Debian cloud kernel: /init runs", d["init"])
        ms = fig_memory.summary(ctx, boot)
        t.section("2. VMM memory overhead (MiB: VMM RSS minus guest RAM touched; median)")
        for (guest, mem), row in ms.items():
            for key, what in (("peak_mib", "peak"), ("steady_mib", "steady")):
                vals = {n: (v[key] if isinstance(v, dict) else v) for n, v in row.items()}
                name = "default guest idle" if guest == "linux" else "tiny idle guest"
                t.row(f"{name}, {mem} MiB, {what}", vals)
        res["memory_summary"] = ms
        res["boot_summary"] = bs
    ex = res.get("exits")
    if ex:
        es = fig_exits.summary(ctx, ex)
        res["exits_summary"] = es
        t.section(f"3. Exit cost (us per round trip, {ex['n']} exits per batch; median)")
        for k in fig_exits.KINDS:
            vals = {n: (v / 1000 if isinstance(v, float) else v) for n, v in
                    ((n, es[n][k]) for n in es if n != "floor")}
            fl = es["floor"][k]
            t.row(fig_exits.KIND_LABEL[k], vals, other=fl / 1000 if isinstance(fl, float) else fl,
                  other_label="KVM_RUN floor")
    blk = res.get("blk")
    if blk:
        t.section("4. virtio-blk, 4 KiB blocks (MiB/s; us per request)")
        if not blk["available"]:
            t.row("all", {"vmon": not_available(blk["reason"])})
        else:
            for k in ("seq_read", "seq_write", "rand_read", "rand_write"):
                g, h = blk["vmon"][k], blk["host"][k]
                for key, unit in (("mib_s", "MiB/s"), ("lat_us", "us")):
                    t.row(f"{k.replace('_', ' ')} {unit}", {"vmon": g[key] if isinstance(g, dict) else g},
                          other=h[key] if isinstance(h, dict) else h, other_label="host fio")
            ex = blk["vmon"].get("exits")
            if ex is not None:
                t.row("VM exits per request, all", {"vmon": ex["total"] if isinstance(ex, dict) else ex})
                t.row("VM exits per request, MMIO", {"vmon": ex["mmio"] if isinstance(ex, dict) else ex})
    dens = res.get("density")
    if dens:
        t.section("5. Start rate (VMs/s, all started at once) and density (VMs in available memory)")
        for guest, what in (("tiny", "tiny idle guest"), ("linux", "default guest")):
            rows = {r["vmm"]: r for r in dens if r["guest"] == guest}
            if not rows and guest == "linux" and ctx.quick and ctx.guest:
                t.row(f"{what}: start rate and density", {"vmon": not_run("not run with --quick")})
            if not rows:
                continue
            k = max(r["k"] for r in rows.values())

            def val(r, key):
                if key in r:
                    return r[key]
                return fails(r.get("failure", "no result"))
            rate = {n: val(r, "rate_per_s") for n, r in rows.items()}
            fit = {n: val(r, "fit") for n, r in rows.items()}
            pss = {n: val(r, "pss_mib") for n, r in rows.items()}
            for n in [v.name for v in ctx.vmms()]:
                if n not in rows and guest == "linux" and n in ctx.linux_failures:
                    rate[n] = fit[n] = pss[n] = fails(ctx.linux_failures[n])
            t.row(f"{what}: start rate, {k} VMs (VMs/s)", rate)
            t.row(f"{what}: memory per VM (Pss MiB)", pss)
            t.row(f"{what}: VMs that fit", fit)
    snap = res.get("snapshot")
    if snap:
        t.section("6. Snapshot restore latency")
        if not snap["available"]:
            t.row("restore", {"vmon": not_available(snap["reason"])})
        else:
            t.row("restore: spawn -> guest answers (s)", {"vmon": snap["restore_s"]})
            t.row("snapshot: vmon ctl snapshot (s)", {"vmon": snap["snapshot_s"]})
            t.row("snapshot size on disk (MiB), 128 MiB guest", {"vmon": snap["size_mib"]})
    mig = res.get("migrate")
    if mig:
        ms = fig_migrate.summary(ctx, mig)
        res["migrate_summary"] = ms
        t.section(f"7. Live migration on loopback, downtime target {mig['target_ms']} ms (median of "
                  f"{mig['reps']}; rounds: as each VMM counts them)")
        for (guest, mem), row in ms.items():
            name = f"{fig_migrate.GUEST_LABEL[guest]}, {mem} MiB"
            t.row(f"{name}: downtime (ms)", {n: v["downtime_ms"] for n, v in row.items()},
                  other=mig["target_ms"], other_label="target")
            t.row(f"{name}: total (ms)", {n: v["total_ms"] for n, v in row.items()})
            t.row(f"{name}: rounds", {n: v["rounds"] for n, v in row.items()})
            t.row(f"{name}: runs on at destination (of {mig['reps']})", {n: v["ran_on"] for n, v in row.items()})
        if ctx.quick:
            t.row("1 GiB guests", {"vmon": not_run("not run with --quick")})
    cl = res.get("clone")
    if cl:
        t.section("8. Clones of one snapshot, N at once (vmon only; s from spawning the first; median)")
        if not cl["available"]:
            t.row("clones", {"vmon": not_available(cl["reason"])})
        else:
            for label, v, other, other_label in fig_clone.rows(ctx, cl):
                t.row(label, {"vmon": v}, other=other, other_label=other_label)
    if res.get("overcommit"):
        fig_overcommit.table(t, ctx, res["overcommit"])
    if res.get("confinement"):
        fig_confinement.table(t, ctx, res["confinement"])
    return t


def debian_kernel(ctx, path):
    say(f"boot: Debian's cloud kernel {path} on vmon (this takes many minutes here)")
    r = fig_boot.linux_run(ctx, ctx.vmon, 512, ctx.args.cpus, 1800, "debian", kernel=path)
    cell = r["init"] if r["init"] is not None else fails(r.get("failure", "did not reach /init"))
    return {"run": r, "init": {"vmon": cell}}


def main():
    a = parse_args()
    root = a.root
    out_dir = os.path.join(root, "bench", "results")
    log_dir = os.path.join(out_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    qver = vmms.qemu_version()
    qemus = [vmms.Qemu("microvm"), vmms.Qemu("pc")] if qver else []
    ctx = Context(a, root, vmms.Vmon(a.vmon), qemus, guest_from_env(a.guest_env), out_dir, log_dir)

    atexit.register(proc.kill_all)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: sys.exit(1))

    only = set(x for x in a.only.split(",") if x) or {"boot"} | {name for name, _ in FIGURES}
    res = {"meta": {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "mem_available_mib": proc.mem_available_kb() // 1024, "qemu": qver, "quick": a.quick,
        "kvm_module": "kvm_pvm (software-virtualized)" if os.path.exists("/sys/module/kvm_pvm") else
        ("kvm_intel" if os.path.exists("/sys/module/kvm_intel") else
         "kvm_amd" if os.path.exists("/sys/module/kvm_amd") else "unknown"),
        "vmon": subprocess.run([a.vmon, "version"], capture_output=True, text=True).stdout.strip(),
        "default_guest": ctx.guest,
    }}
    if ctx.guest is None:
        say("the default guest is not built: Linux figures are skipped (run scripts/build-guest.sh)")
    if not qemus:
        say("QEMU is not installed: only vmon is measured")
    if "boot" in only:
        res["boot"] = fig_boot.run(ctx)
        if a.debian_kernel and a.debian_kernel_path:
            res["debian"] = debian_kernel(ctx, a.debian_kernel_path)
    for name, fig in FIGURES:
        if name in only:
            res[name] = fig.run(ctx)

    table = build_table(ctx, res)
    text = table.render()
    res["meta"]["duration_s"] = round(ctx.elapsed(), 1)
    res["table"] = text
    title = (f"vmon vs QEMU {qver or '(missing)'} on {res['meta']['kvm_module']}, "
             f"{res['meta']['date']}{' (--quick)' if a.quick else ''}")
    png = os.path.join(out_dir, "latest.png")
    why = "no boot or exit figures in this run"
    if res.get("boot_summary") or res.get("exits_summary"):
        bs = res.get("boot_summary", {})
        boot_labels = {n: lab for n, lab in [("vmon", "vmon"), ("qemu-microvm", "QEMU microvm"),
                                             ("qemu-pc", "QEMU pc"), ("qemu-pc-tcg", "QEMU pc TCG")]
                       if n in bs}
        es = res.get("exits_summary", {})
        exit_labels = {n: lab for n, lab in [("vmon", "vmon"), ("qemu-microvm", "QEMU microvm"),
                                             ("qemu-pc", "QEMU pc"), ("floor", "bare KVM_RUN loop")]
                       if n in es}
        why = report.chart(png, bs, boot_labels, es, exit_labels, fig_boot.MILESTONES,
                           ["tiny guest output", "vmon set-up", "console byte", "kernel banner",
                            "/init", "shell"], title)
    res["meta"]["chart"] = png if why is None else why
    with open(os.path.join(out_dir, "latest.json"), "w") as f:
        f.write(report.to_json(res) + "\n")
    print(title)
    print(text)
    print(f"\nwrote {os.path.relpath(os.path.join(out_dir, 'latest.json'), root)}"
          + (f" and {os.path.relpath(png, root)}" if why is None else f" (no chart: {why})")
          + f"; logs in {os.path.relpath(log_dir, root)}/; took {ctx.elapsed():.0f} s")


if __name__ == "__main__":
    main()
