"""What every figure needs: the run context, alternation of VMMs, medians, failure notes."""
import os
import statistics
import sys
import time


class Context:
    def __init__(self, args, root, vmon, qemus, guest, out_dir, log_dir):
        self.args = args
        self.quick = args.quick
        self.root = root
        self.vmon = vmon            # vmms.Vmon
        self.qemus = qemus          # [vmms.Qemu] with KVM; empty when QEMU is missing
        self.guest = guest          # {"kernel", "initrd"} of the default guest, or None
        self.out_dir = out_dir
        self.log_dir = log_dir
        self.bench_build = os.path.join(root, "build", "bench")
        self.start = time.monotonic()
        self.linux_failures = {}    # vmm name -> why it cannot boot the default guest
        self.vmon_extra_cmdline = ""  # kernel options vmon adds on this host (from its log)

    def vmms(self):
        return [self.vmon] + self.qemus

    def log_path(self, *parts):
        return os.path.join(self.log_dir, "-".join(str(p) for p in parts) + ".log")

    def guest_elf(self, name):
        return os.path.join(self.bench_build, "guests", name + ".elf")

    def elapsed(self):
        return time.monotonic() - self.start


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def rotations(items, reps):
    """Yields (rep, item) so that every rep runs all items, each rep starting one further
    along: runs of different VMMs alternate and none always goes first."""
    for rep in range(reps):
        k = rep % len(items) if items else 0
        for it in items[k:] + items[:k]:
            yield rep, it


def median(values):
    vals = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return a / b
    return None


class Cell:
    """A table cell that is not a number: why there is no figure."""

    def __init__(self, kind, reason):
        self.kind = kind        # "fails", "not available", "not run"
        self.reason = reason

    def to_json(self):
        return {"kind": self.kind, "reason": self.reason}


def fails(reason):
    return Cell("fails", reason)


def not_available(reason):
    return Cell("not available", reason)


def not_run(reason):
    return Cell("not run", reason)
