"""Figure 4: virtio-blk throughput and latency from inside the default guest, against fio on
the host reading and writing the same file.

Lights up by itself once `vmon run --help` documents a disk option (--disk/--drive/--blk).
In the guest, bench/lib/blkbench.c (built static, appended to the default initramfs) is
started through the serial console (the default guest's shell): 4 KiB requests with O_DIRECT
at queue depth 1, sequential and random, reads and writes, the same count each. vmon's
metrics (its control API) just before and after give the VM exits per request, by reason:
queue notifications and completions go through ioeventfd and irqfd, so none should be MMIO.
"""
import json
import os
import re
import shutil
import subprocess

import proc
from common import fails, say

DISK_OPTION = re.compile(r"(--(?:disk|drive|blk))\b")
FILE_MIB = 64     # the file fio works on
GUEST_OPS = 128   # requests per pattern in the guest with --quick (four times that otherwise):
                  # each costs system calls, which are slow where the guest kernel is emulated
BLOCK = 4096
PATTERNS = ("seq_read", "seq_write", "rand_read", "rand_write")


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


def blk_initrd(ctx):
    """The default initramfs with /blkbench appended (the kernel unpacks concatenated archives)."""
    tool = os.path.join(ctx.bench_build, "blkbench")
    if not os.path.exists(tool):
        return None
    stage = os.path.join(ctx.bench_build, "blk-initrd")
    os.makedirs(stage, exist_ok=True)
    shutil.copy(tool, os.path.join(stage, "blkbench"))
    extra = subprocess.run(["cpio", "-o", "-H", "newc"], input=b"blkbench\n", cwd=stage,
                           capture_output=True)
    if extra.returncode != 0:
        return None
    out = os.path.join(ctx.bench_build, "blk-initrd.cpio")
    with open(out, "wb") as f, open(ctx.guest["initrd"], "rb") as base:
        shutil.copyfileobj(base, f)
        f.write(extra.stdout)
    return out


def vm_exits(sock):
    """{reason: exits summed over vCPUs, "blk_requests": ...} from vmon's /metrics, or {}."""
    p = subprocess.run(["curl", "-s", "--max-time", "10", "--unix-socket", sock, "http://localhost/metrics"],
                       capture_output=True, text=True)
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r'vmon_vcpu_exits_total\{vcpu="\d+",reason="([^"]+)"\} (\d+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
        m = re.match(r'vmon_device_requests_total\{device="blk0"\} (\d+)', line)
        if m:
            out["blk_requests"] = int(m.group(1))
    return out


def exits_per_request(before, after):
    req = after.get("blk_requests", 0) - before.get("blk_requests", 0)
    if not before or not after or req <= 0:
        return fails("no metrics from vmon's API (is curl installed?)")
    reasons = {k: (after.get(k, 0) - before.get(k, 0)) / req for k in set(before) | set(after)
               if k != "blk_requests"}
    return {"requests": req, "total": sum(reasons.values()), "mmio": reasons.get("mmio", 0.0),
            "by_reason": {k: round(v, 3) for k, v in sorted(reasons.items()) if v}}


def guest_blkbench(ctx, option, path):
    initrd = blk_initrd(ctx)
    if not initrd:
        f = fails("could not build the initramfs with blkbench (make -f bench/Makefile; cpio)")
        return {p: f for p in PATTERNS + ("exits",)}
    ops = GUEST_OPS if ctx.quick else 4 * GUEST_OPS
    script = f"/blkbench /dev/vda {ops}\n".encode()
    vmm = ctx.vmon
    sock = os.path.join(ctx.bench_build, "blk-api.sock")
    cmd = vmm.cmd(ctx.guest["kernel"], initrd, "console=ttyS0", 1, 256) + [option, path, "--api-sock", sock]
    before, after = {}, {}

    def start():
        before.update(vm_exits(sock))
        return script

    def done():
        after.update(vm_exits(sock))
        return b""

    pr = proc.run("vmon-blk", cmd, markers={"idle": "Welcome to the vmon default guest",
                                            "done": "BENCH-BLK-DONE"},
                  send={"idle": start, "done": done}, stop_on="done", grace=0.5,
                  timeout=300 if ctx.quick else 900, log_path=ctx.log_path("blk", "vmon"))
    results = {}
    for _, s, text in pr.lines:
        m = re.search(r"BENCH-BLK (\w+) ops=\d+ seconds=[\d.]+ mib_s=([\d.]+) lat_us=([\d.]+)", text)
        if s == "out" and m and m.group(1) in PATTERNS:
            results[m.group(1)] = {"mib_s": float(m.group(2)), "lat_us": float(m.group(3))}
    missing = fails("blkbench in the guest gave no result (see the log in bench/results/logs)")
    out = {p: results.get(p, missing) for p in PATTERNS}
    out["exits"] = exits_per_request(before, after) if results else missing
    return out


def run(ctx):
    option = disk_option(ctx) if ctx.guest else None
    if not option:
        reason = ("vmon has no virtio-blk yet (no disk option in `vmon run --help`)" if ctx.guest
                  else "no default guest")
        return {"available": False, "reason": reason}
    path = os.path.join(ctx.bench_build, "blk.img")
    with open(path, "wb") as f:
        f.truncate(FILE_MIB * 2**20)
    seconds = 1 if ctx.quick else 10
    say(f"virtio-blk: fio on the host against {path}")
    host = {rw: host_fio(path, rw, seconds) for rw in ("read", "write", "randread", "randwrite")}
    say(f"virtio-blk: blkbench in the default guest on vmon ({option} {path})")
    guest = guest_blkbench(ctx, option, path)
    return {"available": True, "option": option,
            "host": {"seq_read": host["read"], "seq_write": host["write"],
                     "rand_read": host["randread"], "rand_write": host["randwrite"]},
            "vmon": guest}
