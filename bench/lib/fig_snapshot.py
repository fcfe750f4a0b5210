"""Figure 6: snapshot restore latency (vmon only: QEMU's savevm/loadvm is not driven here).

When vmon documents `vmon restore` and `vmon ctl snapshot`: the test suite's echo guest
(tests/guests/echo.c: waits for a line on the serial console, prints it back) is booted with
an API socket, snapshotted while it waits (`vmon ctl snapshot DIR --keep-running=false`),
stopped, and restored with `vmon restore DIR` with a line already queued on its console.
Restore latency: spawning `vmon restore` -> the guest's answer ("got: ...") on the console.
Also reported: how long `vmon ctl snapshot` took and the snapshot's size on disk.
"""
import os
import re
import shutil
import subprocess

import proc
from common import fails, median, say


def supported(ctx):
    try:
        top = subprocess.run([ctx.vmon.binary, "--help"], capture_output=True, text=True, timeout=10)
        text = top.stdout + top.stderr
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(re.search(r"^\s+restore\s", text, re.M)) and "--api-sock" in ctx.vmon.help_text()


def dir_size_mib(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(d, f))
            total += st.st_blocks * 512
    return total / 2**20


def one(ctx, rep):
    work = os.path.join(ctx.bench_build, f"snapshot-{rep}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sock, snap = os.path.join(work, "api.sock"), os.path.join(work, "snap")
    guest = os.path.join(ctx.root, "build", "guests", "echo.elf")
    # The snapshot goes beneath build/bench: vmon's Landlock lets it write there only when told.
    pr = proc.Proc("vmon-snap", [ctx.vmon.binary, "run", "--kernel", guest, "--memory", "128M",
                                 "--api-sock", sock, "--snapshot-dir", work],
                   markers={"ready": "echo ready"}, timeout=60,
                   log_path=ctx.log_path("snapshot", "run", rep)).start()
    r = {"rep": rep}
    try:
        while "ready" not in pr.marks and pr.elapsed() < 30 and pr.p.poll() is None:
            proc.watch_once(pr)
        if "ready" not in pr.marks:
            r["failure"] = "the echo guest did not start"
            return r
        r["snapshot_s"], failure = ctx.vmon.snapshot(sock, snap, 120)
        if failure:
            r["failure"] = failure
            return r
        r["size_mib"] = dir_size_mib(snap)
    finally:
        pr.terminate()
        proc.watch([pr])
    rr = proc.run("vmon-restore", [ctx.vmon.binary, "restore", snap], markers={"got": "got: "},
                  send={"start": b"restored\n"}, stop_on="got", grace=1.0, timeout=60,
                  log_path=ctx.log_path("snapshot", "restore", rep))
    if "got" in rr.marks:
        r["restore_s"] = rr.marks["got"]
    else:
        r["failure"] = "vmon restore: " + (" / ".join(rr.stderr_tail(2)) or f"exit status {rr.rc}")
    shutil.rmtree(work, ignore_errors=True)
    return r


def run(ctx):
    if not supported(ctx):
        return {"available": False, "reason": "vmon has no snapshot/restore yet"}
    if not os.path.exists(os.path.join(ctx.root, "build", "guests", "echo.elf")):
        return {"available": False, "reason": "build/guests/echo.elf is missing (make guests)"}
    runs = []
    for rep in range(1 if ctx.quick else 3):
        say(f"snapshot: snapshot and restore of the echo guest on vmon (rep {rep + 1})")
        runs.append(one(ctx, rep))
    out = {"available": True, "runs": runs}
    for k in ("restore_s", "snapshot_s", "size_mib"):
        v = median([r.get(k) for r in runs])
        out[k] = v if v is not None else fails(next((r["failure"] for r in runs if r.get("failure")), "no result"))
    return out
