#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (tests/fuzz/corpus_NAME/): a few valid
inputs each, so that a short run starts from requests a real driver or user sends.
Run from the repository root: tests/fuzz/make-seeds.py (needs only Python 3)."""
import gzip, json, lzma, os, struct, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)))


def put(target, name, data):
    d = os.path.join(ROOT, "corpus_" + target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- virtio devices: the layout of tests/fuzz/fuzz_virtio.h ----
FV_RAM, QBYTES, DATA = 0x10000, 0x400, 0x1000


def virtio_input(chains, qsize_log2=3, features=0, queues=1):
    """chains: {queue: [[(bytes_or_len, writable), ...], ...]}: each segment is either bytes the
    driver wrote (readable) or a length of buffer for the device to fill (writable)."""
    ram = bytearray(DATA)
    data = bytearray()
    qsize = 1 << qsize_log2
    for q, qchains in chains.items():
        desc, avail = QBYTES * q, QBYTES * q + 0x100
        n = 0
        for ci, chain in enumerate(qchains):
            head = n
            for si, seg in enumerate(chain):
                content, writable = seg
                addr = DATA + len(data)
                if writable:
                    length = content
                    data += bytes(length)
                else:
                    length = len(content)
                    data += content
                data += bytes(-len(data) % 16)
                flags = (2 if writable else 0) | (1 if si + 1 < len(chain) else 0)
                struct.pack_into("<QIHH", ram, desc + 16 * n, addr, length, flags, (n + 1) % qsize)
                n += 1
            struct.pack_into("<H", ram, avail + 4 + 2 * ci, head)
        struct.pack_into("<HH", ram, avail, 0, len(qchains))
    hdr = bytes([qsize_log2]) + struct.pack("<Q", features) + bytes([0, 0]) + bytes(5)
    return hdr + bytes(ram) + bytes(data)


def blk_hdr(t, sector=0):
    return struct.pack("<IIQ", t, 0, sector)


put("virtio_blk", "read", virtio_input({0: [[(blk_hdr(0, 1), False), (512, True), (1, True)]]}))
put("virtio_blk", "write", virtio_input({0: [[(blk_hdr(1, 2), False), (b"\xa5" * 512, False), (1, True)]]}))
put("virtio_blk", "flush_getid", virtio_input({0: [[(blk_hdr(4), False), (1, True)],
                                                    [(blk_hdr(8), False), (20, True), (1, True)]]}))
put("virtio_blk", "discard", virtio_input({0: [[(blk_hdr(11), False), (struct.pack("<QII", 0, 8, 0), False), (1, True)]]},
                                         features=1 << 13))
put("virtio_rng", "one", virtio_input({0: [[(64, True)]]}))
put("virtio_rng", "two", virtio_input({0: [[(16, True), (300, True)], [(1, True)]]}))
# virtio-balloon, all features (STATS_VQ, DEFLATE_ON_OOM, REPORTING): inflateq, deflateq, statsq, reporting_vq.
pfns = struct.pack("<5I", 12, 13, 14, 3, 0xffffffff)
stats = struct.pack("<HQHQ", 4, 1 << 20, 5, 1 << 24) + b"\x07"
put("virtio_balloon", "inflate_deflate", virtio_input({0: [[(pfns, False)]], 1: [[(pfns[:8], False)]]},
                                                      features=0x26, queues=4))
put("virtio_balloon", "stats_report", virtio_input({2: [[(stats, False)]], 3: [[(0x1000, True), (0x2000, True)]]},
                                                   features=0x26, queues=4))
put("virtio_balloon", "report_no_stats", virtio_input({2: [[(0x3000, True)]]}, features=0x20, queues=3))
put("virtio_console", "tx_rx", virtio_input({0: [[(64, True)]], 1: [[(b"hello, console\n", False)]]}, queues=2))
frame = bytes(6 * [0xff]) + bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56]) + b"\x08\x06" + bytes(46)
net_hdr = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 0)
put("virtio_net", "tx", virtio_input({0: [[(1526, True)]], 1: [[(net_hdr + frame, False)]]}))
put("virtio_net", "tx_split", virtio_input({1: [[(net_hdr, False), (frame, False)]]}))
put("virtio_net", "tx_csum", virtio_input({1: [[(struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 16, 0) + frame, False)]]},
                                         features=1))


def vsock_pkt(op, payload=b"", src_port=5000, dst_port=1024):
    return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, len(payload), 1, op, 0, 65536, 0) + payload


put("virtio_vsock", "connect_send", virtio_input(
    {0: [[(44 + 256, True)], [(44 + 256, True)]],
     1: [[(vsock_pkt(1), False)], [(vsock_pkt(5, b"ping"), False)], [(vsock_pkt(4), False)]]}))
put("virtio_vsock", "credit", virtio_input({0: [[(44, True)]], 1: [[(vsock_pkt(1), False)], [(vsock_pkt(7), False)],
                                                                   [(vsock_pkt(3), False)]]}))


# ---- register sequences: the layout of tests/fuzz/fuzz_ops.h ----
def op(write, size, off, val=0, extra=0):
    return bytes([(0x80 if write else 0) | {1: 0, 2: 1, 4: 2, 8: 3}[size] | extra << 4]) + struct.pack("<HI", off, val)


put("serial", "init_and_print", b"".join([op(1, 1, 3, 0x80), op(1, 1, 0, 1), op(1, 1, 1, 0), op(1, 1, 3, 3),
                                          op(1, 1, 2, 0xc7), op(1, 1, 1, 0x0f), op(1, 1, 0, 0x41), op(0, 1, 5),
                                          op(0, 1, 2), op(0, 1, 0, 0x6b6f, extra=1), op(0, 1, 0), op(0, 1, 6)]))
put("i8042", "init", b"".join([op(1, 1, 4, 0xad), op(1, 1, 4, 0x20), op(0, 1, 0), op(1, 1, 4, 0x60), op(1, 1, 0, 0x47),
                               op(1, 1, 0, 0xff), op(0, 1, 0), op(0, 1, 0), op(1, 1, 4, 0xaa), op(0, 1, 4),
                               op(0, 1, 0, extra=1), op(0, 1, 0), op(1, 1, 4, 0xfe)]))
put("rtc", "read_time", struct.pack("<Q", 1764921600 * 10**9) + b"".join(
    [x for r in (0, 2, 4, 6, 7, 8, 9, 0x32, 0x0a, 0x0b, 0x0c, 0x0d) for x in (op(1, 1, 0, r), op(0, 1, 1))]))
put("rtc", "set_time", struct.pack("<Q", 1764921600 * 10**9) + b"".join(
    [op(1, 1, 0, 0x0b), op(1, 1, 1, 0x82), op(1, 1, 0, 9), op(1, 1, 1, 0x26), op(1, 1, 0, 8), op(1, 1, 1, 0x12),
     op(1, 1, 0, 0x0b), op(1, 1, 1, 0x02), op(0, 1, 0, 0x1000, extra=1), op(1, 1, 0, 0x0c), op(0, 1, 1)]))
put("acpi_pm", "enable_sleep", b"".join([op(0, 2, 0), op(1, 2, 2, 0x0121), op(0, 2, 4), op(1, 2, 0, 0xffff),
                                         op(1, 2, 4, 5 << 10 | 1 << 13), op(1, 1, 6, 0x0f), op(0, 4, 0)]))
common = [op(1, 1, 0x14, 0), op(1, 1, 0x14, 3), op(1, 4, 0x00, 1), op(0, 4, 0x04), op(1, 4, 0x08, 1),
          op(1, 4, 0x0c, 1), op(1, 1, 0x14, 11), op(0, 1, 0x14)]
for q in (0, 1):
    common += [op(1, 2, 0x16, q), op(0, 2, 0x18), op(1, 2, 0x18, 8), op(1, 4, 0x20, QBYTES * q),
               op(1, 4, 0x28, QBYTES * q + 0x100), op(1, 4, 0x30, QBYTES * q + 0x200), op(1, 2, 0x1c, 1)]
common += [op(1, 1, 0x14, 15), op(1, 2, 0x3004, 1, extra=4), op(0, 1, 0x1000, extra=4), op(0, 4, 0x2000, extra=4),
           op(1, 1, 0x14, 0)]
put("virtio_pci", "bring_up", bytes(0x800) + b"".join(common))
put("msix", "enable_and_fire", b"".join([op(1, 4, 0, 0xfee00000), op(1, 4, 4, 0), op(1, 4, 8, 0x41), op(1, 4, 12, 0),
                                         op(1, 2, 0, 0x8000, extra=1), op(0, 8, 0x800), op(0, 4, 0, extra=2),
                                         op(0, 8, 0x800), op(1, 4, 12, 1), op(0, 4, 0, extra=2), op(1, 4, 12, 0),
                                         op(0, 8, 0x800), op(1, 2, 0, 0xc000, extra=1), op(0, 4, 0x10)]))


def cfg(dev, reg):
    return 0x80000000 | dev << 11 | reg


put("pci_config", "enumerate", b"".join([op(1, 4, 0, cfg(0, 0)), op(0, 4, 4), op(1, 4, 0, cfg(1, 0)), op(0, 4, 4),
                                         op(1, 4, 0, cfg(1, 0x10)), op(1, 4, 4, 0xffffffff), op(0, 4, 4),
                                         op(1, 4, 4, 0xe0000000), op(1, 4, 0, cfg(1, 4)), op(1, 2, 4, 6),
                                         op(1, 4, 0, cfg(1, 0x34)), op(0, 1, 4), op(1, 4, 0, cfg(2, 0)),
                                         op(0, 4, 4)]))

# ---- the x86 decoder and XSAVE images ----
for i, (mode, insn) in enumerate([(2, "8b0425001000"), (2, "48c70500100000ffffffff"), (2, "0fae6c2440"),
                                  (2, "480fc74c2408"), (1, "66a5"), (0, "f3a4"), (2, "c4e27d18c0"),
                                  (2, "8b8485f0ffffff"), (2, "0f01d0")]):
    put("insn_decode", "insn%d" % i, bytes([mode]) + bytes.fromhex(insn))
ymm = bytes([2, 0, 1, 0, 0x40, 2, 0, 0])  # component 2: 256 bytes at 576
area = bytearray(832)
struct.pack_into("<I", area, 24, 0x1f80)
struct.pack_into("<Q", area, 512, 7)
put("xsave", "standard", bytes([1]) + ymm + struct.pack("<QQ", 7, 7) + bytes([1]) + bytes(area))
struct.pack_into("<QQ", area, 512, 7, (1 << 63) | 7)
put("xsave", "compacted", bytes([1]) + ymm + struct.pack("<QQ", 7, 7) + bytes([3]) + bytes(area))

# ---- host-facing parsers ----
put("snapshot", "sections", b"\x01" + b"".join(bytes([len(n)]) + n.encode() + struct.pack("<H", len(d)) + d
                                                for n, d in [("vm", b"\x01\x02"), ("vcpu0", bytes(64)),
                                                             ("dev/serial", b"x" * 20)]))
put("snapshot", "raw_magic", b"\x00VMONSNAP" + struct.pack("<II", 1, 128) + bytes(120))
# The migration stream (docs/migration.md): a preamble, then records framed by
# type, length, CRC32 of the payload, CRC32 of those 12 bytes.
def mig_record(rtype, payload):
    head = struct.pack("<III", rtype, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def snapshot_state(sections):
    """A snapshot state file (docs/snapshot-format.md) holding sections [(name, data)]."""
    table, body = b"", b""
    data_at = 128 + 64 * len(sections)
    for name, data in sections:
        table += name.encode().ljust(40, b"\0") + struct.pack("<QQII", data_at + len(body), len(data),
                                                             zlib.crc32(data), 0)
        body += data + bytes(-len(data) % 8)
    rest = table + body
    hdr = bytearray(b"VMONSNAP" + struct.pack("<IIQIIQ", 1, 128, 128 + len(rest), len(sections), 0, 9) +
                    b"GenuineIntel" + struct.pack("<I", 0x906ea) + bytes(32) +
                    struct.pack("<III", zlib.crc32(table), zlib.crc32(rest), 0) + bytes(28))
    struct.pack_into("<I", hdr, 96, zlib.crc32(bytes(hdr)))
    return bytes(hdr) + rest


MIG_RAM = 1 << 20
mig_start = (b"VMONMIGR" + struct.pack("<II", 1, 0) +
             mig_record(1, struct.pack("<II", 0, 0) + b"0.1.0".ljust(64, b"\0")) +
             mig_record(2, struct.pack("<QII", MIG_RAM, 1, 4096) + b"GenuineIntel" + struct.pack("<I", 0x906ea) +
                        bytes(32) + struct.pack("<II", 0, 0)))
mig_state = mig_record(6, snapshot_state([("config", b'{"cpus":1}'), ("vcpu.0.regs", bytes(144))]))
put("migration_stream", "raw_two_rounds", b"\x00" + mig_start +
    mig_record(3, struct.pack("<QQ", 0, 1) + b"\x5a" * 4096) +
    mig_record(4, struct.pack("<QQ", 4096, 255)) + mig_record(5, struct.pack("<IIQ", 1, 0, 256)) +
    mig_record(3, struct.pack("<QQ", 8192, 2) + bytes(range(256)) * 32) +
    mig_record(5, struct.pack("<IIQ", 2, 0, 2)) + mig_state + mig_record(7, struct.pack("<II", 2, 0)))
put("migration_stream", "raw_no_rounds", b"\x00" + mig_start + mig_state + mig_record(7, struct.pack("<II", 0, 0)))
# Writer operations, 3 bytes each: op % 5 (0 change a page, 1 send pages, 2 round, 3 state, 4 end), a, b.
put("migration_stream", "ops", b"\x01" + bytes([0, 3, 1, 1, 0, 255, 2, 0, 0, 0, 3, 9, 1, 3, 0, 2, 0, 0,
                                               3, 7, 40, 4, 0, 0]))

# A hello record inside a stream belongs to the handshake: the reader refuses it.
mig_hello_src = mig_record(8, struct.pack("<IIII", 1, 0, 3, 0) + b"0.1.0".ljust(64, b"\0") + b"abc")
put("migration_stream", "raw_hello_inside", b"\x00" + mig_start + mig_hello_src + mig_state +
    mig_record(7, struct.pack("<II", 0, 0)))

# Post-copy (docs/migration.md): the switch record after the state, with its discard runs, which
# the pre-copy reader hands over (it refuses any post-copy record before the switch).
mig_switch = (mig_record(10, struct.pack("<QQ", 2, 3)) + mig_record(11, struct.pack("<QQ", 0, 1)) +
              mig_record(11, struct.pack("<QQ", 8192, 2)))
put("migration_stream", "raw_postcopy_switch", b"\x00" + mig_start + mig_record(3, struct.pack("<QQ", 0, 1) +
    b"\x5a" * 4096) + mig_record(5, struct.pack("<IIQ", 1, 0, 1)) + mig_state + mig_switch)
put("migration_stream", "raw_request_inside", b"\x00" + mig_start + mig_record(12, struct.pack("<QII", 0, 1, 0)) +
    mig_state + mig_record(7, struct.pack("<II", 0, 0)))
# What a source reads from a destination during post-copy: page requests (gpa, count, reserved),
# in range and not (above the 3 GiB + 1 MiB of RAM, in the MMIO hole, count 0 or 257), then done.
put("postcopy_records", "requests", mig_record(12, struct.pack("<QII", 0, 1, 0)) +
    mig_record(12, struct.pack("<QII", 0x100000000, 256, 0)) + mig_record(12, struct.pack("<QII", 0xC0000000, 1, 0)) +
    mig_record(12, struct.pack("<QII", 4096, 0, 0)) + mig_record(12, struct.pack("<QII", 8192, 257, 0)) +
    mig_record(14, struct.pack("<QQ", 3, 2)))
put("postcopy_records", "unaligned", mig_record(12, struct.pack("<QII", 4097, 1, 0)))

# The handshake (docs/migration.md): byte 0 bit 0 = this end is the source, bit 1 = its caller
# refuses; then what the peer sends: preamble, hello (role, flags, blob length, reserved,
# version, blob), verdict (accept, reserved, reason[504]).
def mig_verdict(accept, reason=b""):
    return mig_record(9, struct.pack("<II", accept, 0) + reason.ljust(504, b"\0"))


mig_pre = b"VMONMIGR" + struct.pack("<II", 1, 0)
mig_hello_dst = mig_record(8, struct.pack("<IIII", 2, 0, 0, 0) + b"0.1.0".ljust(64, b"\0"))
put("migration_handshake", "source_says_hello", b"\x00" + mig_pre + mig_hello_src + mig_verdict(1))
put("migration_handshake", "source_refused_here", b"\x02" + mig_pre + mig_hello_src + mig_verdict(1))
put("migration_handshake", "destination_accepts", b"\x01" + mig_pre + mig_hello_dst + mig_verdict(1))
put("migration_handshake", "destination_refuses", b"\x01" + mig_pre + mig_hello_dst +
    mig_verdict(0, b"the guest needs 8 GiB"))
put("migration_handshake", "refused_before_hello", b"\x01" + mig_pre + mig_verdict(0, b"TLS only"))
put("migration_handshake", "other_format", b"\x00VMONMIGR" + struct.pack("<II", 2, 0) + mig_hello_src)
put("migration_handshake", "http", b"\x00GET / HTTP/1.1\r\n\r\n")

for name, text in [("ipv4", "tcp:127.0.0.1:4444"), ("ipv6", "tcp:[::1]:4444"), ("name", "tcp:dest.example:4444"),
                   ("tls", "tcp:[fe80::1]:1,tls-cert=/c.pem,tls-key=/c.key,tls-ca=/ca.pem,tls-hostname=d"),
                   ("no_port", "tcp:host"), ("port0", "tcp:h:0")]:
    put("migration_address", name, text.encode())

put("config_json", "full", json.dumps({"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0", "cpus": 2,
                                       "memory": "512M", "disks": [{"path": "/tmp/d.img", "readonly": True}],
                                       "net": [{"kind": "user"}], "api_sock": "/tmp/api.sock"}).encode())
put("config_json", "small", b'{"kernel": "k", "memory": 64}')
put("config_json", "memory_settings", b'{"kernel": "k", "memory": "64M,merge=on,hugepages=off"}')
put("config_json", "memory_object", b'{"kernel": "k", "memory": {"size": "64M", "hugepages": true, "merge": false}}')
put("api", "get_vm", b"\x00/vm\x00")
put("api", "pause", b"\x01/vm/state\x00{\"state\": \"paused\"}")
put("api", "shutdown", b"\x01/vm/shutdown\x00{\"timeout_s\": 1}")
put("api", "metrics", b"\x00/metrics\x00")
put("api", "stop", b"\x01/vm/stop\x00{}")

# ELF64 with one PT_LOAD at 1 MiB.
ehdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, bytes(7), 2, 62, 1, 0x100000, 64, 0, 0,
                   64, 56, 1, 64, 0, 0)
phdr = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, 0x100000, 0x100000, 16, 0x2000, 0x1000)
put("elf", "one_segment", ehdr + phdr + bytes(0x1000 - 64 - 56) + b"\xf4" * 16)


def bzimage(payload):
    setup_sects = 1
    img = bytearray(512 * (1 + setup_sects))
    img[0x1f1] = setup_sects
    struct.pack_into("<H", img, 0x1fe, 0xaa55)
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, 0x020f)
    struct.pack_into("<I", img, 0x22c, 0x7fffffff)
    struct.pack_into("<H", img, 0x236, 1)
    struct.pack_into("<I", img, 0x248, 0)
    struct.pack_into("<I", img, 0x24c, len(payload))
    struct.pack_into("<Q", img, 0x258, 0x1000000)
    struct.pack_into("<I", img, 0x260, 0x100000)
    pm = bytearray(0x400) 
    pm[:len(payload)] = payload
    return bytes(img) + bytes(pm)


put("bzimage", "gzip_elf", bzimage(gzip.compress(ehdr + phdr + bytes(0x1000 - 120) + b"\xf4" * 16)))
put("bzimage", "xz_elf", bzimage(lzma.compress(ehdr + phdr + bytes(0x1000 - 120) + b"\xf4" * 16,
                                               check=lzma.CHECK_CRC32)))
plain = b"vmon fuzz payload " * 20
put("decompress", "gzip", b"\x00" + gzip.compress(plain))
put("decompress", "xz", b"\x00" + lzma.compress(plain, check=lzma.CHECK_CRC32))
put("decompress", "lzma", b"\x00" + lzma.compress(plain, format=lzma.FORMAT_ALONE))
put("decompress", "zlib_as_gzip", b"\x01" + zlib.compress(plain))

# ---- the VM generation ID's snapshot state: magic "VGEN", version 1, the buffer's address, the ID ----
VMGENID_GPA = 0xFF000  # LAYOUT_VMGENID
put("vmgenid", "valid", struct.pack("<IIQ", 0x4E454756, 1, VMGENID_GPA) + bytes(range(16)))
put("vmgenid", "bad-gpa", struct.pack("<IIQ", 0x4E454756, 1, 0x1000) + bytes(16))
