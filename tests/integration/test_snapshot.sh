#!/usr/bin/env bash
# Snapshots: vmon ctl snapshot and vmon restore on the snapshot test guest (exact register and
# memory round trip, counting on, clones, replacing a snapshot), every kind of damaged snapshot,
# the restore latency for 128 MiB and 1 GiB guests, and the default Linux guest carrying on
# after a restore (its shell answers, a counting process counts on, a file written before is there),
# cloned 8 times (MACs, random bytes and generation IDs all differ, memory shared, clocks right)
# and restored with --clock=realtime and --clock=continue.
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip snapshot "no usable /dev/kvm on this machine"
	exit 0
fi

SECTIONS="python3 tests/integration/snapshot_sections.py"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT

# finish PID: stops a VM started with start (SIGTERM) and returns its exit status.
finish() {
	kill -TERM "$1" 2>/dev/null
	( sleep 30; kill -KILL "$1" 2>/dev/null ) & local dog=$!
	wait "$1"
	local rc=$?
	kill $dog 2>/dev/null
	wait $dog 2>/dev/null
	return $rc
}

ctl() { "$VMON" ctl --sock "$@"; }

G=$GUESTS/snapcount.elf
SNAP=$TEST_TMP/snap

# ---- the test guest: exact round trip ----
start src run --kernel $G --memory 64M --api-sock $TEST_TMP/src.sock
SRC_PID=$PID SRC_OUT=$OUT SRC_ERR=$ERR
wait_for $SRC_OUT '^count: 3$' 120
ctl $TEST_TMP/src.sock snapshot $SNAP --keep-running=false >$TEST_TMP/snap1.json 2>$TEST_TMP/snap1.err
RC=$?
OUT=$SRC_OUT ERR=$TEST_TMP/snap1.err
expect snapshot/write "vmon ctl snapshot succeeds and leaves state and memory files" \
	sh -c "[ $RC -eq 0 ] && [ -f $SNAP/state ] && ls $SNAP/memory-* >/dev/null && grep -q '\"paused\"' $TEST_TMP/snap1.json"
# The paused source prints nothing more: its output ends where the snapshot was taken.
sleep 1
cp $SRC_OUT $TEST_TMP/src-at-snapshot.out

start restored restore $SNAP --paused --api-sock $TEST_TMP/restored.sock
R_PID=$PID R_OUT=$OUT R_ERR=$ERR
wait_for $R_ERR 'stays paused' 60
ctl $TEST_TMP/restored.sock snapshot $TEST_TMP/snap-again --keep-running=false >/dev/null 2>$TEST_TMP/snap2.err
diffs=$($SECTIONS compare $SNAP/state $TEST_TMP/snap-again/state 2>&1)
RC=$?
OUT=$R_OUT ERR=$R_ERR
expect snapshot/exact-cpu-and-devices "a restored VM's registers, system registers, FPU, MSRs, LAPIC, irqchips and devices equal the snapshot's (differences: $diffs)" \
	sh -c "[ $RC -eq 0 ]"
expect snapshot/exact-memory "a restored VM's RAM equals the snapshot's, byte for byte" \
	cmp -s -n $((64 * 1024 * 1024)) $SNAP/memory-* $TEST_TMP/snap-again/memory-*

ctl $TEST_TMP/restored.sock resume >/dev/null
last=$(last_count $TEST_TMP/src-at-snapshot.out)
wait_for $R_OUT "^count: $((last + 3))\$" 120
no_fail() { ! grep -q FAIL "$@"; }
expect snapshot/guest-continues "the restored guest counts on from the snapshot ($last) with its pattern and registers intact" \
	counts_consecutive $TEST_TMP/src-at-snapshot.out $R_OUT
expect snapshot/guest-checks-pass "the restored guest's pattern and register checks pass" no_fail $R_OUT

# The source was left paused by --keep-running=false; it resumes and counts on by itself.
ctl $TEST_TMP/src.sock resume >/dev/null
wait_for $SRC_OUT "^count: $((last + 3))\$" 120
OUT=$SRC_OUT ERR=$SRC_ERR
expect snapshot/source-resumes "the snapshotted VM resumes and counts on" counts_consecutive $SRC_OUT

# The restored VM, which runs from $SNAP's memory file, snapshots into $SNAP: the new snapshot
# replaces the old one, leaving one memory file, and the VM keeps running from the old one.
ctl $TEST_TMP/restored.sock snapshot $SNAP >/dev/null 2>$TEST_TMP/snap3.err
RC=$?
OUT=$R_OUT ERR=$TEST_TMP/snap3.err
expect snapshot/replace "a second snapshot into the same directory replaces the first" \
	sh -c "[ $RC -eq 0 ] && [ \$(ls $SNAP | grep -c '^memory-') -eq 1 ] && [ \$(ls -A $SNAP | wc -l) -eq 2 ]"
r_last=$(last_count $R_OUT)
wait_for $R_OUT "^count: $((r_last + 2))\$" 120
expect snapshot/runs-on-after-replace "the VM keeps running after its memory file was replaced" \
	counts_consecutive $TEST_TMP/src-at-snapshot.out $R_OUT
finish $SRC_PID; rc_src=$?
finish $R_PID; rc_r=$?
OUT=$R_OUT ERR=$R_ERR
expect snapshot/clean-exit "both VMs stop with exit 0 and no sanitizer report" \
	sh -c "[ $rc_src -eq 0 ] && [ $rc_r -eq 0 ] && ! grep -qE 'Sanitizer|runtime error' $SRC_ERR $R_ERR"

# ---- clones: the same snapshot restored twice at once ----
start clone1 restore $SNAP --api-sock $TEST_TMP/c1.sock
C1=$PID C1_OUT=$OUT
start clone2 restore $SNAP --api-sock $TEST_TMP/c2.sock
C2=$PID C2_OUT=$OUT
# These come from the snapshot the restored VM took, whose RAM was read through its private
# mapping of the first memory file.
base=$(last_count $R_OUT)
wait_for $C1_OUT "^count: $((base + 2))\$" 120
wait_for $C2_OUT "^count: $((base + 2))\$" 120
ctl $TEST_TMP/c1.sock pause >/dev/null
c1_paused=$(last_count $C1_OUT)
c2_now=$(last_count $C2_OUT)
wait_for $C2_OUT "^count: $((c2_now + 3))\$" 120
c1_later=$(last_count $C1_OUT)
OUT=$C2_OUT ERR=$TEST_TMP/clone2.err
expect snapshot/clones "two restores of one snapshot run independently: one paused at $c1_paused (still $c1_later), the other counted on from $c2_now" \
	sh -c "[ '$c1_paused' = '$c1_later' ] && tr -d '\r' <$C2_OUT | grep -q '^count: $((c2_now + 3))\$'"
expect snapshot/clones-checks-pass "both clones' pattern and register checks pass" no_fail $C1_OUT $C2_OUT
finish $C1; finish $C2

# ---- clones of a VM with host-side sockets: each clone gets its own vsock socket ----
start vsrc run --kernel $G --memory 64M --net user --vsock cid=3,uds=$TEST_TMP/v0.sock --api-sock $TEST_TMP/vsrc.sock
V_PID=$PID V_OUT=$OUT
wait_for $V_OUT '^count: 2$' 120
ctl $TEST_TMP/vsrc.sock snapshot $TEST_TMP/vsnap >/dev/null 2>&1
finish $V_PID
start vc1 restore $TEST_TMP/vsnap --vsock cid=3,uds=$TEST_TMP/v1.sock
VC1=$PID VC1_OUT=$OUT VC1_ERR=$ERR
start vc2 restore $TEST_TMP/vsnap --vsock cid=3,uds=$TEST_TMP/v2.sock --net user
VC2=$PID VC2_OUT=$OUT VC2_ERR=$ERR
vbase=$(last_count $V_OUT)
wait_for $VC1_OUT "^count: $((vbase + 2))\$" 120
wait_for $VC2_OUT "^count: $((vbase + 2))\$" 120
OUT=$VC2_OUT ERR=$VC2_ERR
expect snapshot/clones-own-sockets "two clones of a VM with a NIC and vsock run side by side, each with its own vsock socket" \
	sh -c "tr -d '\r' <$VC1_OUT | grep -q '^count: $((vbase + 2))\$' && tr -d '\r' <$VC2_OUT | grep -q '^count: $((vbase + 2))\$' && \
	       [ -S $TEST_TMP/v1.sock ] && [ -S $TEST_TMP/v2.sock ]"
finish $VC1; finish $VC2
run_vmon restore-net-count 60 restore $TEST_TMP/vsnap --net user --net user
expect snapshot/override-count "replacing the backends of a different number of NICs is refused (exit 2)" \
	sh -c "[ $RC -eq 2 ] && grep -q 'give --net 1 times' $ERR"

# ---- disk images: a snapshot records them; a changed one is warned about, a resized one refused ----
truncate -s 16M $TEST_TMP/disk.img
start dsrc run --kernel $G --memory 64M --disk $TEST_TMP/disk.img --api-sock $TEST_TMP/dsrc.sock
D_PID=$PID D_OUT=$OUT
wait_for $D_OUT '^count: 2$' 120
ctl $TEST_TMP/dsrc.sock snapshot $TEST_TMP/dsnap --disks=none >/dev/null 2>&1
finish $D_PID
start drestored restore $TEST_TMP/dsnap
DR=$PID DR_OUT=$OUT DR_ERR=$ERR
wait_for $DR_OUT "^count: $(( $(last_count $D_OUT) + 1 ))\$" 120
finish $DR
OUT=$DR_OUT ERR=$DR_ERR
expect snapshot/disk-restores "a VM with a disk restores with its image unchanged, without a warning" \
	sh -c "tr -d '\r' <$DR_OUT | grep -q '^count: ' && ! grep -q 'modified after the snapshot' $DR_ERR"
touch $TEST_TMP/disk.img
start dtouched restore $TEST_TMP/dsnap
wait_for $ERR 'modified after the snapshot' 60
finish $PID
expect snapshot/disk-changed-warns "an image written after the snapshot is warned about" grep -q 'modified after the snapshot' $ERR
truncate -s 32M $TEST_TMP/disk.img
run_vmon disk-resized 60 restore $TEST_TMP/dsnap
expect snapshot/disk-resized-refused "an image of another size is refused (exit 2)" \
	sh -c "[ $RC -eq 2 ] && grep -q 'the snapshot.s guest knew it with 16777216' $ERR"
truncate -s 16M $TEST_TMP/disk.img
run_vmon disk-readonly 60 restore $TEST_TMP/dsnap --disk $TEST_TMP/disk.img,readonly
expect snapshot/disk-readonly-refused "--disk ...,readonly for a disk that was read-write: exit 2, says read-only versus read-write" \
	sh -c "[ $RC -eq 2 ] && grep -q 'was read-write when the snapshot was taken and --disk .* makes it read-only' $ERR"

# ---- disks captured with memory: --disks=overlay on a qcow2 disk, restored twice at once ----
qemu-img create -q -f qcow2 $TEST_TMP/ov-base.qcow2 16M
qemu-io -c 'write -q -P 0x11 0 64k' $TEST_TMP/ov-base.qcow2 >/dev/null
OV_BASE=$(realpath $TEST_TMP/ov-base.qcow2)
base_sum=$(sha256sum <$OV_BASE)
start osrc run --kernel $G --memory 64M --disk $OV_BASE --api-sock $TEST_TMP/osrc.sock
O_PID=$PID O_OUT=$OUT O_ERR=$ERR
wait_for $O_OUT '^count: 2$' 120
ctl $TEST_TMP/osrc.sock snapshot $TEST_TMP/osnap --disks=overlay >/dev/null 2>$TEST_TMP/osnap.err
RC=$?
live=$(ls $TEST_TMP/osnap/disk0-*.qcow2 2>/dev/null | head -1)
expect snapshot/overlay-taken "--disks=overlay: the VM continues on a new overlay in DIR whose backing file is its old disk" \
	sh -c "[ $RC -eq 0 ] && [ -n '$live' ] && qemu-img info -U '$live' | grep -q '^backing file: $OV_BASE'"
wait_for $O_OUT "^count: $(( $(last_count $O_OUT) + 2 ))\$" 120
expect snapshot/overlay-source-runs "the snapshotted VM counts on, on its overlay" \
	sh -c "tr -d '\r' <$O_OUT | grep -q '^count: ' && ! grep -qE 'Sanitizer|runtime error' $O_ERR"
finish $O_PID
mkdir -p $TEST_TMP/od1
start or1 restore $TEST_TMP/osnap --disk-dir $TEST_TMP/od1
OR1=$PID OR1_OUT=$OUT OR1_ERR=$ERR
start or2 restore $TEST_TMP/osnap
OR2=$PID OR2_OUT=$OUT OR2_ERR=$ERR
wait_for $OR1_OUT "^count: " 120
wait_for $OR2_OUT "^count: " 120
finish $OR1
finish $OR2
ov1=$(sed -n 's/.*its writes go to \(.*\.qcow2\).*/\1/p' $OR1_ERR | head -1)
ov2=$(sed -n 's/.*its writes go to \(.*\.qcow2\).*/\1/p' $OR2_ERR | head -1)
expect snapshot/overlay-restored-twice "two restores of one snapshot run at once, each on its own overlay on the snapshot's layer" \
	sh -c "[ -n '$ov1' ] && [ -n '$ov2' ] && [ '$ov1' != '$ov2' ] && case '$ov1' in $TEST_TMP/od1/*) ;; *) exit 1;; esac &&
	       qemu-img info '$ov1' | grep -q '^backing file: $OV_BASE' && qemu-img info '$ov2' | grep -q '^backing file: $OV_BASE' &&
	       qemu-img check -q '$ov1' && qemu-img check -q '$ov2' && ! grep -q 'modified after the snapshot' $OR1_ERR $OR2_ERR"
expect snapshot/overlay-layer-unchanged "the snapshot's layer is unchanged and qemu-img check finds it clean" \
	sh -c "[ \"\$(sha256sum <$OV_BASE)\" = '$base_sum' ] && qemu-img check -q $OV_BASE"

# ---- a snapshot that fails leaves the VM running and an earlier snapshot intact ----
# vmon is started with SIGXFSZ ignored, then its file-size limit is lowered: writing the memory
# file fails with EFBIG as it would on a full disk.
OUT=$TEST_TMP/efbig.out ERR=$TEST_TMP/efbig.err
(trap '' XFSZ; exec "$VMON" run --kernel $G --memory 64M --api-sock $TEST_TMP/efbig.sock </dev/null >$OUT 2>$ERR) &
F_PID=$!
PIDS+=($F_PID)
wait_for $OUT '^count: 2$' 120
ctl $TEST_TMP/efbig.sock snapshot $TEST_TMP/keep >/dev/null 2>&1
cp $TEST_TMP/keep/state $TEST_TMP/keep-state.copy
if prlimit --pid $F_PID --fsize=65536:unlimited 2>/dev/null; then
	ctl $TEST_TMP/efbig.sock snapshot $TEST_TMP/keep >/dev/null 2>$TEST_TMP/efbig-ctl.err
	RC=$?
	n=$(last_count $OUT)
	wait_for $OUT "^count: $((n + 2))\$" 120
	ERR=$TEST_TMP/efbig-ctl.err
	expect snapshot/failure-reported "a failed snapshot is reported (exit 1, the reason)" \
		sh -c "[ $RC -eq 1 ] && grep -q 'File too large' $ERR"
	expect snapshot/failure-keeps-earlier "the earlier snapshot in the directory is intact, no temporary files are left" \
		sh -c "cmp -s $TEST_TMP/keep/state $TEST_TMP/keep-state.copy && [ \$(ls -A $TEST_TMP/keep | wc -l) -eq 2 ]"
	expect snapshot/failure-vm-runs "the VM keeps running after a failed snapshot" \
		sh -c "tr -d '\r' <$OUT | grep -q '^count: $((n + 2))\$'"
else
	skip snapshot/failure "prlimit cannot change vmon's file-size limit here"
fi
finish $F_PID

# ---- damaged or foreign snapshots: exit 2, one clear line, no crash ----
bad_snapshot() { # bad_snapshot NAME PATTERN DIR
	run_vmon "bad-$1" 60 restore "$3"
	expect "snapshot/bad-$1" "exit 2 and a message matching '$2'" \
		sh -c "[ $RC -eq 2 ] && grep -qiE '$2' $ERR && ! grep -qE 'Sanitizer|runtime error' $ERR"
}
# copy_snap NAME: a fresh copy of the good snapshot to damage.
copy_snap() { rm -rf "$TEST_TMP/$1"; cp -r "$SNAP" "$TEST_TMP/$1"; echo "$TEST_TMP/$1"; }
# patch STATE PYTHON: edits the state file's bytes (b) in place; fix_header recomputes its checksum.
patch() {
	python3 - "$1" "$2" <<'EOF'
import struct, sys, zlib
path, code = sys.argv[1], sys.argv[2]
b = bytearray(open(path, "rb").read())
def section(name):
    n = struct.unpack_from("<I", b, 24)[0]
    for i in range(n):
        nm, off, ln, _, _ = struct.unpack_from("<40sQQII", b, 128 + 64 * i)
        if nm.rstrip(b"\0").decode() == name:
            return off, ln
    raise SystemExit("no section " + name)
def fix_header():
    struct.pack_into("<I", b, 96, 0)
    struct.pack_into("<I", b, 96, zlib.crc32(bytes(b[:128])))
def sections():
    n = struct.unpack_from("<I", b, 24)[0]
    out = []
    for i in range(n):
        nm, off, ln, _, _ = struct.unpack_from("<40sQQII", b, 128 + 64 * i)
        out.append((nm.rstrip(b"\0"), bytes(b[off:off + ln])))
    return out
def rebuild(secs):
    """Lays the file out again with secs [(name, data)], every checksum valid: what a forger does."""
    table, body, start = bytearray(), bytearray(), 128 + 64 * len(secs)
    for nm, data in secs:
        table += struct.pack("<40sQQII", nm, start + len(body), len(data), zlib.crc32(data), 0)
        body += data + b"\0" * (-len(data) % 8)
    new = bytearray(b[:128]) + table + body
    struct.pack_into("<QI", new, 16, len(new), len(secs))
    struct.pack_into("<II", new, 88, zlib.crc32(bytes(table)), zlib.crc32(bytes(new[128:])))
    b[:] = new
    fix_header()
exec(code)
open(path, "wb").write(b)
EOF
}

bad_snapshot missing-dir "cannot open the snapshot directory" $TEST_TMP/no-such-snapshot
bad_snapshot not-a-dir "not a directory" $G
d=$(copy_snap magic); patch $d/state 'b[0:8] = b"NOTASNAP"'
bad_snapshot magic "not a vmon snapshot" $d
d=$(copy_snap version); patch $d/state 'struct.pack_into("<I", b, 8, 99)'
bad_snapshot version "format version 99.*reads version 1" $d
d=$(copy_snap truncated); truncate -s -100 $d/state
bad_snapshot truncated "truncated" $d
d=$(copy_snap flipped); patch $d/state 'off, ln = section("vcpu.0.regs"); b[off + 17] ^= 0x04'
bad_snapshot flipped-byte "section .vcpu.0.regs. of the snapshot is corrupted" $d
d=$(copy_snap empty); : >$d/state
bad_snapshot empty "state file is empty" $d
d=$(copy_snap vendor); patch $d/state 'b[40:52] = (b"AuthenticAMD" if bytes(b[40:52]) != b"AuthenticAMD" else b"GenuineIntel"); fix_header()'
bad_snapshot cpu-vendor "same CPU vendor" $d
d=$(copy_snap features); patch $d/state 'struct.pack_into("<I", b, 56 + 4 * 7, 0xffffffff); struct.pack_into("<I", b, 56 + 4 * 4, 0xffffffff); fix_header()'
bad_snapshot cpu-features "lacks features the snapshot.s guest was using" $d
d=$(copy_snap mem-truncated); truncate -s -4096 $d/memory-*
bad_snapshot memory-truncated "memory file .* truncated" $d
d=$(copy_snap mem-missing); rm $d/memory-*
bad_snapshot memory-missing "cannot open the snapshot.s memory file" $d
d=$(copy_snap mem-foreign); cp $TEST_TMP/snap-again/memory-* $d/"$(basename $d/memory-*)"
bad_snapshot memory-foreign "belongs to another snapshot" $d
d=$(copy_snap mem-dir); m=$(basename $d/memory-*); rm $d/$m; mkdir $d/$m
bad_snapshot memory-is-dir "memory file .*$m is not a regular file \(a directory\)" $d
d=$(copy_snap mem-zero); m=$(basename $d/memory-*); ln -sf /dev/zero $d/$m
bad_snapshot memory-is-dev-zero "memory file .*$m is not a regular file \(a character device\)" $d
d=$(copy_snap api-sock); patch $d/state 'rebuild([(n, (v[:-1] + b",\"api_sock\":\"/tmp/forged.sock\"}") if n == b"config" else v) for n, v in sections()])'
bad_snapshot config-api-sock '"api_sock" in its configuration section.*not written by vmon' $d
d=$(copy_snap dup); patch $d/state 's = sections(); rebuild(s + [x for x in s if x[0] == b"vcpu.0.regs"])'
bad_snapshot duplicate-section "two sections called .vcpu.0.regs." $d
d=$(copy_snap ctrl); patch $d/state 'rebuild(sections() + [(b"dev.\x1b[2J", b"x")])'
bad_snapshot control-chars "has a name that is empty or holds characters other than printable ASCII" $d
d=$(copy_snap no-msrs); patch $d/state 'rebuild([(n, b"" if n == b"vcpu.0.msrs" else v) for n, v in sections()])'
bad_snapshot empty-msrs "section .vcpu.0.msrs. is empty" $d

# ---- a snapshot of a restored VM whose memory file was truncated fails and names the file ----
d=$(copy_snap shrunk)
start shrunk restore $d --api-sock $TEST_TMP/shrunk.sock
wait_for $OUT "^count: [0-9]+\$" 120
ctl $TEST_TMP/shrunk.sock pause >/dev/null
truncate -s 4096 $d/memory-*
ctl $TEST_TMP/shrunk.sock snapshot $TEST_TMP/from-shrunk >/dev/null 2>$TEST_TMP/shrunk-snap.err
rc=$?
expect snapshot/source-memory-truncated "the snapshot fails naming the shrunk memory file; no state file is written" \
	sh -c "[ $rc -ne 0 ] && grep -q 'memory file $d/memory-.* has shrunk to 4096 bytes' $TEST_TMP/shrunk-snap.err && [ ! -e $TEST_TMP/from-shrunk/state ]"
kill -KILL $PID 2>/dev/null

# ---- a restored VM whose memory file shrinks while it runs stops, naming the file ----
# The guest's code pages are read from the file (it never writes them): once they are gone its
# vCPU's KVM_RUN fails with EFAULT (exit 1); vmon touching such a page itself gives exit 3.
d=$(copy_snap shrink-running)
start shrink-running restore $d
wait_for $OUT "^count: [0-9]+\$" 120
truncate -s 4096 $d/memory-*
( sleep 60; kill -KILL $PID 2>/dev/null ) & dog=$!
wait $PID
RC=$?
kill $dog 2>/dev/null
wait $dog 2>/dev/null
expect snapshot/memory-shrunk-while-running "the VM stops with a line naming the shrunk memory file, not a guest crash" \
	sh -c "[ $RC -eq 1 -o $RC -eq 3 ] && grep -q 'guest RAM is mapped from $d/memory-.*, which has shrunk to 4096 bytes (was ' $ERR && ! grep -qE 'guest crashed|Sanitizer|runtime error' $ERR"

# ---- restore --verify: the RAM checksum written with the snapshot ----
d=$(copy_snap verify-ok)
start verify-ok restore $d --verify
wait_for $OUT "^count: [0-9]+\$" 120
ok=$?
expect snapshot/verify-intact "restore --verify of an intact snapshot checks its RAM and runs the guest" \
	sh -c "[ $ok -eq 0 ] && grep -q 'guest memory matches the snapshot.s checksum' $ERR"
finish $PID
# flip_mem_byte DIR: XORs one byte of guest RAM that the memory file holds (in its first data extent).
flip_mem_byte() {
	python3 - "$(ls $1/memory-*)" <<'EOF2'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = os.lseek(fd, 0, os.SEEK_DATA) + 100
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0x20]), off)
EOF2
}
d=$(copy_snap verify-flipped); flip_mem_byte $d
run_vmon verify-flipped 120 restore $d --verify
expect snapshot/verify-flipped-byte "restore --verify refuses a memory file with one flipped byte (exit 2, the reason)" \
	sh -c "[ $RC -eq 2 ] && grep -q 'memory file $d/memory-.* does not match the checksum written with the snapshot: it was changed or damaged' $ERR && ! grep -q 'VM restored' $ERR"
start verify-flipped-unchecked restore $d
expect snapshot/verify-flipped-without-verify "without --verify the same snapshot restores (RAM is not read)" \
	sh -c "for i in \$(seq 600); do grep -q 'VM restored' $ERR && exit 0; sleep 0.1; done; exit 1"
kill -KILL $PID 2>/dev/null
# A memory file as vmon releases before the checksum wrote it: flags 0, trailer CRC over 40 bytes.
d=$(copy_snap verify-old)
python3 - "$(ls $d/memory-*)" <<'EOF2'
import os, struct, sys, zlib
fd = os.open(sys.argv[1], os.O_RDWR)
at = os.fstat(fd).st_size - 4096
t = bytearray(os.pread(fd, 48, at))
t[32:48] = bytes(16)
struct.pack_into("<I", t, 32, zlib.crc32(bytes(t[:40])))
os.pwrite(fd, bytes(t), at)
EOF2
run_vmon verify-old 120 restore $d --verify
expect snapshot/verify-old-snapshot "restore --verify of a snapshot without the checksum says so (exit 2)" \
	sh -c "[ $RC -eq 2 ] && grep -q 'has no checksum to verify: the snapshot was written by an older vmon' $ERR"

# ---- temporaries left by a snapshot killed half-way are removed by the next one ----
d=$(copy_snap stale)
: >$d/.tmp-memory-AbCdEf
: >$d/.tmp-state-AbCdEf
start stale restore $d --api-sock $TEST_TMP/stale.sock
wait_for $OUT "^count: [0-9]+\$" 120
ctl $TEST_TMP/stale.sock snapshot $d >/dev/null 2>&1
expect snapshot/stale-temporaries "a snapshot into the directory removes temporaries left by a killed writer" \
	sh -c "[ -e $d/state ] && ! ls -A $d | grep -q '^.tmp-' && grep -q 'left by a snapshot that was interrupted' $ERR"
finish $PID

# ---- restore latency: vmon restore start to the guest running ----
# The release build, as users run it; the time grows with the host probes, not with RAM.
VMON_RELEASE=${VMON_RELEASE:-build/vmon}
for mem in 128M 1G; do
	dir=$TEST_TMP/lat-$mem
	OUT=$TEST_TMP/lat-src-$mem.out ERR=$TEST_TMP/lat-src-$mem.err
	"$VMON_RELEASE" run --kernel $G --memory $mem --api-sock $TEST_TMP/lat.sock </dev/null >$OUT 2>$ERR &
	pid=$!
	PIDS+=("$pid")
	wait_for $OUT '^count: 2$' 300
	ctl $TEST_TMP/lat.sock snapshot $dir >/dev/null 2>&1
	finish $pid
	size=$(du -k $dir/memory-* | cut -f1)
	OUT=$TEST_TMP/lat-$mem.out ERR=$TEST_TMP/lat-$mem.err
	t0=$(date +%s%N)
	"$VMON_RELEASE" restore $dir </dev/null >$OUT 2>$ERR &
	pid=$!
	PIDS+=("$pid")
	# "Running" = the guest's next line of output after the restore.
	wait_for $OUT '^count: [0-9]+$' 120
	t1=$(date +%s%N)
	finish $pid
	internal=$(sed -n 's/.*VM restored in \([0-9.]*\) ms.*/\1/p' $ERR)
	echo "    restore latency ($mem guest, snapshot memory file ${size} KiB on disk): ${internal:-?} ms from" \
		"'vmon restore' start to the vCPUs starting, $(((t1 - t0) / 1000000)) ms to the guest's next console line"
	expect snapshot/latency-$mem "the $mem guest restores and runs" sh -c "[ -n '$internal' ]"
done

# ---- vmon clone on the test guest: N clones in the background, each its own generation ID ----
start clonesrc run --kernel $G --memory 64M --api-sock $TEST_TMP/clonesrc.sock
CS_PID=$PID
wait_for $OUT '^count: 2$' 120
ctl $TEST_TMP/clonesrc.sock snapshot $TEST_TMP/clonesnap --keep-running=false >/dev/null 2>&1
finish $CS_PID
t0=$(date +%s%N)
"$VMON" clone $TEST_TMP/clonesnap --count 4 --name-prefix tg --run-dir $TEST_TMP/tg >$TEST_TMP/tg.out 2>$TEST_TMP/tg.err
RC=$?
t1=$(date +%s%N)
OUT=$TEST_TMP/tg.out ERR=$TEST_TMP/tg.err
echo "    vmon clone: 4 clones of a 64 MiB test guest answering their API in $(((t1 - t0) / 1000000)) ms"
genids=""
for i in 1 2 3 4; do
	genids="$genids $(ctl $TEST_TMP/tg/tg-$i.sock info 2>/dev/null | sed -n 's/.*"generation_id": "\([0-9a-f-]*\)".*/\1/p')"
done
expect snapshot/clone-command "vmon clone starts 4 clones, prints a line for each, vmon ps lists them, each has its own generation ID ($genids)" \
	sh -c "[ $RC -eq 0 ] && [ \$(grep -c '^tg-[1-4]  ' $TEST_TMP/tg.out) -eq 4 ] && [ \$('$VMON' ps | grep -c 'tg-[1-4]') -eq 4 ] &&
		[ \$(echo $genids | tr ' ' '\n' | grep -c .) -eq 4 ] && [ \$(echo $genids | tr ' ' '\n' | sort -u | grep -c .) -eq 4 ]"
for i in 1 2 3 4; do ctl $TEST_TMP/tg/tg-$i.sock stop >/dev/null 2>&1; done

# ---- the default Linux guest ----
if [ "${VMON_SNAPSHOT_LINUX:-1}" = 0 ]; then
	skip snapshot/linux "VMON_SNAPSHOT_LINUX=0"
	exit 0
fi
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail snapshot/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}
IN=$TEST_TMP/linux.in
mkfifo $IN
# This shell holds the console's input open (fd 7), so the guest's shell never sees end-of-file.
exec 7<>$IN
OUT=$TEST_TMP/linux.out ERR=$TEST_TMP/linux.err
qemu-img create -q -f qcow2 $TEST_TMP/linux-disk.qcow2 16M
LIN_DISK=$(realpath $TEST_TMP/linux-disk.qcow2)
"$VMON" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cpus 2 --memory 128M \
	--cmdline "$(cat guest/cmdline 2>/dev/null)" --api-sock $TEST_TMP/linux.sock \
	--disk $LIN_DISK --net user <$IN >$OUT 2>$ERR &
L_PID=$!
PIDS+=($L_PID)
LIN_OUT=$OUT LIN_ERR=$ERR
if ! wait_for $OUT 'VMON-INIT: started' $BOOT_TIMEOUT || ! wait_for $OUT 'Enter .help.' 600; then
	fail snapshot/linux-boot "the default guest did not reach its shell; console: $(tail -c 300 $OUT | tr '\r\n' '  ')"
	exit 0
fi
sleep 2
echo 'echo before-snapshot >/tmp/before.txt; (i=0; while :; do i=$((i+1)); echo $i >/tmp/count; sleep 1; done) &' >&7
# mark SECTOR TEXT: the guest writes TEXT at a sector of its disk, synced (for the shell on fd 7/8/9).
mark() { echo "printf '$2' | dd of=/dev/vda bs=512 seek=$1 conv=notrunc,fsync 2>/dev/null; echo MARKED-$2"; }
mark 0 DISK-BEFORE-SNAPSHOT >&7
wait_for $OUT '^MARKED-DISK-BEFORE-SNAPSHOT' 300
sleep 6
echo 'echo "ORIG-MAC=$(cat /sys/class/net/eth0/address) ORIG-RND=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n")"' >&7
wait_for $OUT '^ORIG-MAC=' 300
echo 'echo "COUNT-BEFORE=$(cat /tmp/count)"' >&7
wait_for $OUT '^COUNT-BEFORE=[0-9]+' 300
snap_time=$(date +%s)
ctl $TEST_TMP/linux.sock snapshot $TEST_TMP/linux-snap >/dev/null 2>$TEST_TMP/linux-snap.err
RC=$?
expect snapshot/linux-snapshot "the running Linux guest is snapshotted" sh -c "[ $RC -eq 0 ]"
before=$(tr -d '\r' <$OUT | sed -n 's/^COUNT-BEFORE=//p' | tail -1)
# The snapshot froze the disk (the default, --disks=overlay): the source's later writes go to its overlay.
mark 1 SOURCE-AFTER-SNAPSHOT >&7
wait_for $OUT '^MARKED-SOURCE-AFTER-SNAPSHOT' 300
layer_sum=$(sha256sum <$LIN_DISK)
ctl $TEST_TMP/linux.sock stop >/dev/null
wait $L_PID

IN2=$TEST_TMP/linux2.in
mkfifo $IN2
exec 8<>$IN2
OUT=$TEST_TMP/linux-restored.out ERR=$TEST_TMP/linux-restored.err
"$VMON" restore $TEST_TMP/linux-snap --api-sock $TEST_TMP/linux2.sock <$IN2 >$OUT 2>$ERR &
L2_PID=$!
PIDS+=($L2_PID)
sleep 8
echo 'echo "AFTER count=$(cat /tmp/count) file=$(cat /tmp/before.txt) date=$(date +%s)"' >&8
wait_for $OUT '^AFTER count=' 300
host_after=$(date +%s)
sleep 6
echo 'echo "LATER count=$(cat /tmp/count)"' >&8
wait_for $OUT '^LATER count=' 300
after=$(tr -d '\r' <$OUT | sed -n 's/^AFTER count=\([0-9]*\).*/\1/p' | head -1)
later=$(tr -d '\r' <$OUT | sed -n 's/^LATER count=\([0-9]*\).*/\1/p' | head -1)
expect snapshot/linux-shell "the restored guest's shell answers and the file written before the snapshot is there" \
	sh -c "tr -d '\r' <$OUT | grep -q '^AFTER count=[0-9]* file=before-snapshot'"
expect snapshot/linux-counter "the guest's counting process counts on ($before before, $after and $later after)" \
	sh -c "[ -n '$before' ] && [ -n '$after' ] && [ -n '$later' ] && [ $after -ge $before ] && [ $later -gt $after ]"
# The guest's clock continues from the snapshot: never ahead of the host, and behind by at most
# the time between snapshot and restore (plus the guest's own second of resolution).
gdate=$(tr -d '\r' <$OUT | sed -n 's/^AFTER count=.* date=\([0-9]*\).*/\1/p' | head -1)
expect snapshot/linux-clock "the restored guest's date ($gdate) is between the snapshot ($snap_time) and now ($host_after)" \
	sh -c "[ -n '$gdate' ] && [ '$gdate' -ge $((snap_time - 2)) ] && [ '$gdate' -le $((host_after + 2)) ]"
mark 1 RESTORE-ONE >&8
wait_for $OUT '^MARKED-RESTORE-ONE' 300
ctl $TEST_TMP/linux2.sock stop >/dev/null
wait $L2_PID
RC=$?
# A second restore of the same snapshot: its writes land in its own overlay.
IN3=$TEST_TMP/linux3.in
mkfifo $IN3
exec 9<>$IN3
L3_OUT=$TEST_TMP/linux-restored2.out L3_ERR=$TEST_TMP/linux-restored2.err
"$VMON" restore $TEST_TMP/linux-snap --api-sock $TEST_TMP/linux3.sock <$IN3 >$L3_OUT 2>$L3_ERR &
L3_PID=$!
PIDS+=($L3_PID)
sleep 8
mark 1 RESTORE-TWO >&9
wait_for $L3_OUT '^MARKED-RESTORE-TWO' 300
ctl $TEST_TMP/linux3.sock stop >/dev/null
wait $L3_PID
# sectors IMAGE: the first two sectors of the disk as the image shows them.
sectors() { qemu-img dd -f qcow2 -O raw if="$1" of=$TEST_TMP/sectors.raw bs=512 count=2 >/dev/null && tr -d '\0' <$TEST_TMP/sectors.raw; }
lov1=$(sed -n 's/.*its writes go to \(.*\.qcow2\).*/\1/p' $ERR | head -1)
lov2=$(sed -n 's/.*its writes go to \(.*\.qcow2\).*/\1/p' $L3_ERR | head -1)
layer_ok() {
	[ "$(sha256sum <$LIN_DISK)" = "$layer_sum" ] && qemu-img check -q $LIN_DISK &&
		sectors $LIN_DISK | grep -q DISK-BEFORE-SNAPSHOT && ! sectors $LIN_DISK | grep -qE 'SOURCE-AFTER|RESTORE-'
}
own_overlays_ok() {
	[ -n "$lov1" ] && [ -n "$lov2" ] && [ "$lov1" != "$lov2" ] && qemu-img check -q "$lov1" && qemu-img check -q "$lov2" &&
		sectors "$lov1" | grep -q DISK-BEFORE-SNAPSHOT && sectors "$lov1" | grep -q RESTORE-ONE &&
		! sectors "$lov1" | grep -qE 'RESTORE-TWO|SOURCE-AFTER' &&
		sectors "$lov2" | grep -q DISK-BEFORE-SNAPSHOT && sectors "$lov2" | grep -q RESTORE-TWO &&
		! sectors "$lov2" | grep -qE 'RESTORE-ONE|SOURCE-AFTER'
}
expect snapshot/linux-disk-layer "the snapshot's disk layer holds what the guest wrote before the snapshot only, unchanged since" \
	layer_ok
expect snapshot/linux-disk-own-overlays "each restored guest read the snapshot's disk and wrote to its own overlay only" \
	own_overlays_ok
expect snapshot/linux-stop "the restored Linux VM stops cleanly, no sanitizer report" \
	sh -c "[ $RC -eq 0 ] && ! grep -qE 'Sanitizer|runtime error' $ERR $LIN_ERR"

# ---- clones of the Linux guest: identity, memory shared, disks their own, the clock ----
# Eight clones of the snapshot, each with its console on a pipe of this shell: after the restore,
# each one re-probes its network card (the driver reads the MAC only when it binds) and reports
# its MAC and 32 bytes of /dev/urandom.
orig_mac=$(tr -d '\r' <$LIN_OUT | sed -n 's/^ORIG-MAC=\([0-9a-f:]*\) .*/\1/p' | head -1)
orig_rnd=$(tr -d '\r' <$LIN_OUT | sed -n 's/.*ORIG-RND=\([0-9a-f]*\).*/\1/p' | head -1)
rebind='d=$(basename $(readlink /sys/class/net/eth0/device)); echo $d >/sys/bus/virtio/drivers/virtio_net/unbind; echo $d >/sys/bus/virtio/drivers/virtio_net/bind; sleep 1'
report='echo "CLONE mac=$(cat /sys/class/net/eth0/address) rnd=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n") date=$(date +%s)"'
CLONE_PIDS=()
for i in 1 2 3 4 5 6 7 8; do
	mkfifo $TEST_TMP/clone$i.in
	eval "exec {fd}<>$TEST_TMP/clone$i.in"
	CLONE_FD[$i]=$fd
	"$VMON" restore $TEST_TMP/linux-snap --clone --name lclone-$i --api-sock $TEST_TMP/lclone$i.sock \
		--disk-dir $TEST_TMP <$TEST_TMP/clone$i.in >$TEST_TMP/lclone$i.out 2>$TEST_TMP/lclone$i.err &
	CLONE_PIDS+=($!)
	PIDS+=($!)
done
sleep 8
for i in 1 2 3 4 5 6 7 8; do echo "$rebind; $report" >&${CLONE_FD[$i]}; done
host_now=$(date +%s)
ok=1
for i in 1 2 3 4 5 6 7 8; do wait_for $TEST_TMP/lclone$i.out '^CLONE mac=' 600 || ok=0; done
macs=$(cat $TEST_TMP/lclone*.out | tr -d '\r' | sed -n 's/^CLONE mac=\([0-9a-f:]*\) .*/\1/p')
rnds=$(cat $TEST_TMP/lclone*.out | tr -d '\r' | sed -n 's/^CLONE .*rnd=\([0-9a-f]*\) .*/\1/p')
expect snapshot/clones-differ "8 clones report 8 different MACs ($(echo $macs)) and 8 different random strings, none the original's ($orig_mac)" \
	sh -c "[ $ok -eq 1 ] && [ \$(echo '$macs' | sort -u | wc -l) -eq 8 ] && [ \$(echo '$rnds' | sort -u | wc -l) -eq 8 ] &&
		! echo '$macs' | grep -qx '$orig_mac' && ! echo '$rnds' | grep -qx '$orig_rnd'"
expect snapshot/clones-genid "each clone's log names its own VM generation ID" \
	sh -c "[ \$(cat $TEST_TMP/lclone*.err | sed -n 's/.*VM generation ID //p' | sort -u | wc -l) -eq 8 ]"
expect snapshot/clones-listed "vmon ps lists the 8 clones" sh -c "[ \$('$VMON' ps | grep -c 'lclone-') -eq 8 ]"
pss=0
for p in "${CLONE_PIDS[@]}"; do
	k=$(awk '/^Pss:/ { print $2 }' /proc/$p/smaps_rollup 2>/dev/null)
	pss=$((pss + ${k:-0}))
done
echo "    8 Linux clones (128 MiB guests): $((pss / 1024)) MiB proportional set size together"
expect snapshot/clones-share-memory "8 clones of a 128 MiB guest take less than 4 guests' worth of memory together ($((pss / 1024)) MiB)" \
	sh -c "[ $pss -gt 0 ] && [ $pss -lt $((4 * 128 * 1024)) ]"
gdates=$(cat $TEST_TMP/lclone*.out | tr -d '\r' | sed -n 's/^CLONE .*date=\([0-9]*\).*/\1/p')
expect snapshot/clones-clock "every clone's date is within 2 s of the host's ($host_now): $(echo $gdates)" \
	sh -c "for d in $(echo $gdates); do [ \$((d - $host_now)) -le 2 ] && [ \$(($host_now - d)) -le 2 ] || exit 1; done"
for i in 1 2 3 4 5 6 7 8; do ctl $TEST_TMP/lclone$i.sock stop >/dev/null; done
for p in "${CLONE_PIDS[@]}"; do wait $p; done

# The clock: at least 60 s after the snapshot, a restore is on the host's time by default and
# about that much behind with --clock=continue.
wait_s=$((snap_time + 60 - $(date +%s)))
[ $wait_s -gt 0 ] && sleep $wait_s
for mode in realtime continue; do
	mkfifo $TEST_TMP/clock-$mode.in
	eval "exec {fd}<>$TEST_TMP/clock-$mode.in"
	"$VMON" restore $TEST_TMP/linux-snap --clock=$mode --api-sock $TEST_TMP/clock-$mode.sock --disk-dir $TEST_TMP \
		<$TEST_TMP/clock-$mode.in >$TEST_TMP/clock-$mode.out 2>$TEST_TMP/clock-$mode.err &
	cpid=$!
	PIDS+=($cpid)
	sleep 5
	echo 'echo "CLOCK date=$(date +%s)"' >&$fd
	wait_for $TEST_TMP/clock-$mode.out '^CLOCK date=' 300
	host_now=$(date +%s)
	gd=$(tr -d '\r' <$TEST_TMP/clock-$mode.out | sed -n 's/^CLOCK date=\([0-9]*\).*/\1/p' | head -1)
	behind=$((host_now - ${gd:-0}))
	echo "    --clock=$mode: the guest's date is $behind s behind the host's, $((host_now - snap_time)) s after the snapshot"
	if [ $mode = realtime ]; then
		expect snapshot/clock-realtime "the restored guest's date is within 2 s of the host's ($behind s behind)" \
			sh -c "[ -n '$gd' ] && [ $behind -le 2 ] && [ $behind -ge -2 ]"
	else
		expect snapshot/clock-continue "with --clock=continue the guest is behind by about the time since the snapshot ($behind s)" \
			sh -c "[ -n '$gd' ] && [ $behind -ge 55 ] && [ $behind -le $((host_now - snap_time + 2)) ]"
	fi
	ctl $TEST_TMP/clock-$mode.sock stop >/dev/null
	wait $cpid
done
