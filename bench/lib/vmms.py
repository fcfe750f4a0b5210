"""The VMMs under test and how each is told to boot the same kernel, initrd, command line,
memory and vCPUs."""
import re
import shutil
import subprocess
import time

QEMU = "qemu-system-x86_64"


class Vmm:
    name = ""
    label = ""

    def cmd(self, kernel, initrd=None, cmdline="", cpus=1, mem_mb=128):
        raise NotImplementedError

    def ram_match(self, mem_mb):
        """Picks the guest-RAM mappings in /proc/PID/smaps."""
        raise NotImplementedError


class Vmon(Vmm):
    """vmon run; `extra` options after the common ones (the confinement figure's unconfined
    variant: --seccomp off --landlock off), under another name and label."""

    def __init__(self, binary, extra=(), name="vmon", label="vmon"):
        self.binary = binary
        self.extra = list(extra)
        self.name = name
        self.label = label

    def cmd(self, kernel, initrd=None, cmdline="", cpus=1, mem_mb=128):
        c = [self.binary, "run", "--kernel", kernel]
        if initrd:
            c += ["--initrd", initrd]
        return c + ["--cmdline", cmdline, "--cpus", cpus, "--memory", f"{mem_mb}M"] + self.extra

    def ram_match(self, mem_mb):
        return lambda path, size_kb: "vmon-guest-ram" in path

    def snapshot(self, sock, snap_dir, timeout):
        """`vmon ctl snapshot DIR --keep-running=false` on the VM at sock: (seconds, None) or
        (seconds, why it failed)."""
        t = time.monotonic()
        c = subprocess.run([self.binary, "ctl", "--sock", sock, "snapshot", snap_dir, "--keep-running=false"],
                           capture_output=True, text=True, timeout=timeout)
        took = time.monotonic() - t
        if c.returncode != 0:
            return took, f"vmon ctl snapshot: {(c.stderr or c.stdout).strip()[:120]}"
        return took, None

    def help_text(self):
        try:
            r = subprocess.run([self.binary, "run", "--help"], capture_output=True, text=True, timeout=10)
            return r.stdout + r.stderr
        except (OSError, subprocess.TimeoutExpired):
            return ""


class Qemu(Vmm):
    """qemu-system-x86_64 with one machine type; accel "kvm" or "tcg" (the reference point
    where KVM cannot run the guest, labelled as such)."""

    def __init__(self, machine, accel="kvm"):
        self.machine = machine
        self.accel = accel
        self.name = f"qemu-{machine}" + ("" if accel == "kvm" else f"-{accel}")
        self.label = f"QEMU -M {machine}" + ("" if accel == "kvm" else f" ({accel.upper()}, no KVM)")

    def cmd(self, kernel, initrd=None, cmdline="", cpus=1, mem_mb=128):
        c = [QEMU, "-accel", self.accel, "-M", self.machine, "-m", f"{mem_mb}M", "-smp", cpus,
             "-kernel", kernel, "-append", cmdline,
             "-nographic", "-monitor", "none", "-no-reboot", "-net", "none"]
        if self.machine == "pc":
            c += ["-vga", "none"]
        if initrd:
            c += ["-initrd", initrd]
        return c

    def ram_match(self, mem_mb):
        # QEMU's RAM is one anonymous mapping of (about) the guest size.
        want = mem_mb * 1024
        return lambda path, size_kb: path == "" and want * 0.95 <= size_kb <= want + 8 * 1024


def qemu_version():
    if not shutil.which(QEMU):
        return None
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else out.strip()


# Instruction bytes seen in QEMU's "Code=" dump when KVM on a software-virtualized host
# cannot emulate them (see docs/host-quirks.md); the longest prefix wins.
KNOWN_INSNS = {
    "f0 48 0f c7": "lock cmpxchg16b",
    "48 0f c7": "cmpxchg16b",
    "cc": "int3",
    "cd": "int n",
    "0f 01 ca": "clac",
    "0f 01 cb": "stac",
    "f3 0f b8": "popcnt",
    "f3 48 0f b8": "popcnt",
    "0f 01 f9": "rdtscp",
    "0f 01 d0": "xgetbv",
    "0f ae": "xsave/xrstor/fxsave family",
    "48 0f ae": "xsave/xrstor family",
    "9b": "fwait",
    "0f 01 c1": "vmcall",
    "0f 01 d9": "vmmcall",
}


def failure_reason(pr, limit):
    """Why a VMM run failed, in at most about limit characters: the emulation failure behind it,
    else its last lines on stderr, else its exit status."""
    return describe_failure(pr) or " / ".join(pr.stderr_tail(2))[:limit] or f"exit status {pr.rc}"


def describe_failure(pr):
    """One phrase saying why a VMM did not get the guest where it should, or None."""
    if pr.failure == "emulation":
        code = next((t for _, s, t in reversed(pr.lines) if s == "err" and t.startswith("Code=")), "")
        m = re.search(r"<([0-9a-f]{2})>((?: [0-9a-f]{2}){0,6})", code)
        insn = ""
        if m:
            b = (m.group(1) + m.group(2)).strip()
            for prefix in sorted(KNOWN_INSNS, key=len, reverse=True):
                if b.startswith(prefix):
                    insn = f" ({KNOWN_INSNS[prefix]})"
                    break
            insn = f" at bytes {b[:17]}{insn}"
        rip = next((t for _, s, t in reversed(pr.lines) if s == "err" and "RIP=" in t), "")
        m = re.search(r"RIP=([0-9a-f]+)", rip)
        where = f", RIP {m.group(1)}" if m else ""
        return f"KVM emulation failure after {pr.failure_t:.0f} s{insn}{where}"
    if pr.timed_out:
        return f"timed out after {pr.timeout:.0f} s"
    if pr.rc not in (0, None, -15, 143):
        tail = pr.stderr_tail(1)
        return f"exit status {pr.rc}" + (f": {tail[0][:120]}" if tail else "")
    return None
