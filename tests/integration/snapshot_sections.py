#!/usr/bin/env python3
"""Reads vmon snapshot state files as docs/snapshot-format.md describes them.

  snapshot_sections.py list STATE              name, length and CRC of each section
  snapshot_sections.py compare STATE_A STATE_B  sections that differ between two snapshots,
                                                except the bytes that depend on when the state
                                                was read (see IGNORED below); exit 1 if any
  snapshot_sections.py minimal DIR              writes a snapshot that passes every check of
                                                the files (configuration, memory file) but has
                                                no vCPU or device state, so a restore of it
                                                fails once it builds the VM: for tests of the
                                                commands that start restores, without KVM
"""
import json
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


def write_minimal(d):
    import os
    snapshot_id = 0x1234ABCD5678EF01
    ram = 16 << 20
    mem_name = "memory-%016x" % snapshot_id
    config = json.dumps({"kernel": "/nonexistent/bzImage", "cpus": 1, "memory": ram}).encode()
    memsec = struct.pack("<Q48s", ram, mem_name.encode())
    sections = [("config", config), ("memory", memsec)]
    table_len = ENTRY.size * len(sections)
    off = HEADER.size + table_len
    table, body = b"", b""
    for name, data in sections:
        table += ENTRY.pack(name.encode(), off, len(data), zlib.crc32(data), 0)
        padded = data + bytes(-len(data) % 8)
        body += padded
        off += len(padded)
    total = HEADER.size + table_len + len(body)
    fields = [b"VMONSNAP", 1, HEADER.size, total, len(sections), 0, snapshot_id, b"GenuineIntel", 0] + [0] * 8
    after = table + body
    head = HEADER.pack(*fields, zlib.crc32(table), zlib.crc32(after), 0, bytes(28))
    head = HEADER.pack(*fields, zlib.crc32(table), zlib.crc32(after), zlib.crc32(head), bytes(28))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "state"), "wb") as f:
        f.write(head + after)
    trailer = struct.pack("<8sIIQQ", b"VMONMEM1", 1, 4096, ram, snapshot_id)
    trailer += struct.pack("<I", zlib.crc32(trailer + bytes(4) + struct.pack("<I", 1)))
    trailer += struct.pack("<II", 1, zlib.crc32(bytes(ram)))
    with open(os.path.join(d, mem_name), "wb") as f:
        f.truncate(ram)
        f.seek(ram)
        f.write(trailer + bytes(4096 - len(trailer)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "minimal":
        write_minimal(sys.argv[2])
        return 0
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
