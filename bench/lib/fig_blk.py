"""Figure 4: virtio-blk throughput and latency from inside the default guest, against fio on
the host reading and writing the same file.

Lights up by itself once `vmon run --help` documents a disk option (--disk/--drive/--blk).
In the guest, busybox dd is driven through the serial console (the default guest's shell):
sequential 4 KiB reads and writes with O_DIRECT. Random 4 KiB I/O needs a tool the
initramfs does not have yet, and is reported as such.
"""
import json
import os
import re
import shutil
import subprocess

import proc
from common import fails, not_available, say

DISK_OPTION = re.compile(r"(--(?:disk|drive|blk))\b")
FILE_MIB = 64     # the file fio works on
GUEST_MIB = 4     # what dd moves in the guest: each 4 KiB request costs system calls, which
                  # are slow where the guest kernel is emulated
BLOCK = 4096


def disk_option(ctx):
    m = DISK_OPTION.search(ctx.vmon.help_text())
    return m.group(1) if m else None


def host_fio(path, rw, seconds):
    if not shutil.which("fio"):
        return fails("fio is not installed")
    p = subprocess.run(["fio", "--name=bench", f"--filename={path}", f"--rw={rw}", f"--bs={BLOCK}",
                        f"--size={FILE_MIB}M", "--direct=1", "--ioengine=psync", "--time_based",
                        f"--runtime={seconds}", "--output-format=json"],
                       capture_output=True, text=True, timeout=seconds + 60)
    try:
        job = json.loads(p.stdout)["jobs"][0]
    except (ValueError, KeyError, IndexError):
        return fails(f"fio: {p.stderr.strip()[:100]}")
    side = job["read"] if "read" in rw else job["write"]
    return {"mib_s": side["bw_bytes"] / 2**20, "lat_us": side["clat_ns"]["mean"] / 1000}


def guest_dd(ctx, option, path):
    count = GUEST_MIB * 2**20 // BLOCK
    script = (f"dd if=/dev/vda of=/dev/null bs={BLOCK} count={count} iflag=direct; "
              f"dd if=/dev/zero of=/dev/vda bs={BLOCK} count={count} oflag=direct; "
              "echo BENCH-BLK-\"\"DONE\n").encode()  # the echoed command must not match
    vmm = ctx.vmon
    cmd = vmm.cmd(ctx.guest["kernel"], ctx.guest["initrd"], "console=ttyS0", 1, 256) + [option, path]
    pr = proc.run("vmon-blk", cmd, markers={"idle": "Welcome to the vmon default guest",
                                            "done": "BENCH-BLK-DONE"},
                  send={"idle": script}, stop_on="done", grace=0.5, timeout=300 if ctx.quick else 900,
                  log_path=ctx.log_path("blk", "vmon"))
    results = []
    for _, s, text in pr.lines:
        m = re.search(r"copied, ([\d.]+) seconds", text)
        if s == "out" and m and float(m.group(1)) > 0:
            secs = float(m.group(1))
            results.append({"mib_s": GUEST_MIB / secs, "lat_us": secs * 1e6 / count})
    if len(results) < 2:
        f = fails("dd in the guest gave no result (see the log in bench/results/logs)")
        return {"seq_read": f, "seq_write": f}
    return {"seq_read": results[0], "seq_write": results[1]}


def run(ctx):
    option = disk_option(ctx) if ctx.guest else None
    if not option:
        reason = ("vmon has no virtio-blk yet (no disk option in `vmon run --help`)" if ctx.guest
                  else "no default guest")
        return {"available": False, "reason": reason}
    path = os.path.join(ctx.bench_build, "blk.img")
    with open(path, "wb") as f:
        f.truncate(FILE_MIB * 2**20)
    seconds = 2 if ctx.quick else 10
    say(f"virtio-blk: fio on the host against {path}")
    host = {rw: host_fio(path, rw, seconds) for rw in ("read", "write", "randread", "randwrite")}
    say(f"virtio-blk: dd in the default guest on vmon ({option} {path})")
    guest = guest_dd(ctx, option, path)
    rand = not_available("random 4 KiB I/O needs a tool in the default guest's initramfs")
    guest.update({"rand_read": rand, "rand_write": rand})
    return {"available": True, "option": option,
            "host": {"seq_read": host["read"], "seq_write": host["write"],
                     "rand_read": host["randread"], "rand_write": host["randwrite"]},
            "vmon": guest}
