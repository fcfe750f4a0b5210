#!/usr/bin/env python3
"""Reads vmon snapshot state files as docs/snapshot-format.md describes them.

  snapshot_sections.py list STATE              name, length and CRC of each section
  snapshot_sections.py compare STATE_A STATE_B  sections that differ between two snapshots,
                                                except the bytes that depend on when the state
                                                was read (see IGNORED below); exit 1 if any
"""
import struct
import sys
import zlib

HEADER = struct.Struct("<8sIIQIIQ12sI8IIII28s")
ENTRY = struct.Struct("<40sQQII")


def read(path):
    data = open(path, "rb").read()
    h = HEADER.unpack_from(data, 0)
    magic, version, header_size, file_size, nsections = h[0], h[1], h[2], h[3], h[4]
    assert magic == b"VMONSNAP" and version == 1 and header_size == HEADER.size == 128, path
    assert file_size == len(data), path
    sections = {}
    for i in range(nsections):
        name, off, length, crc, _ = ENTRY.unpack_from(data, header_size + i * ENTRY.size)
        name = name.rstrip(b"\0").decode()
        body = data[off:off + length]
        assert zlib.crc32(body) == crc, name
        sections[name] = body
    return sections


def msrs(body):
    return {idx: val for idx, _, val in struct.iter_unpack("<IIQ", body)}


# MSRs that count time: the TSC and the kvmclock-related ones run while a VM is paused.
TIME_MSRS = {0x10, 0x6e0, 0x3b}
# LAPIC register page: the timer's current count (0x390) is computed when it is read.
LAPIC_TIMER_CCR = 0x390


def differences(a, b):
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            out.append(f"{name}: only in {'first' if name in a else 'second'}")
            continue
        x, y = a[name], b[name]
        if name == "memory":
            x, y = x[:8], y[:8]  # RAM size; the memory file's name is new in every snapshot
        elif name in ("vm.clock", "vm.pit") or name.startswith("dev.pio.rtc"):
            continue  # time-dependent by nature: the clock and counters move between reads
        if name.endswith(".msrs"):
            mx, my = msrs(x), msrs(y)
            bad = [hex(i) for i in sorted(set(mx) | set(my)) if i not in TIME_MSRS and mx.get(i) != my.get(i)]
            if bad:
                out.append(f"{name}: MSRs {', '.join(bad)} differ")
            continue
        if name.endswith(".lapic"):
            x = x[:LAPIC_TIMER_CCR] + x[LAPIC_TIMER_CCR + 4:]
            y = y[:LAPIC_TIMER_CCR] + y[LAPIC_TIMER_CCR + 4:]
        if x != y:
            first = next(i for i in range(min(len(x), len(y))) if x[i] != y[i]) if len(x) == len(y) else -1
            out.append(f"{name}: differs (first at byte {first}, lengths {len(x)}/{len(y)})")
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "list":
        for name, body in read(sys.argv[2]).items():
            print(f"{name} {len(body)} {zlib.crc32(body):08x}")
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        diffs = differences(read(sys.argv[2]), read(sys.argv[3]))
        for d in diffs:
            print(d)
        return 1 if diffs else 0
    print(__doc__, file=sys.stderr)
    return 2


sys.exit(main())
