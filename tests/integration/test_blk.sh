#!/usr/bin/env bash
# virtio-blk seen from a real Linux guest, checked from the host:
#   boot 1 (initramfs with its own /init, three disks):
#     vda: a fresh ext4 image made here; the guest mounts it, writes a file, syncs, unmounts;
#          the host reads the file back with debugfs. Its serial=ID is /sys/block/vda/serial.
#     vdb: a read-only ext4 image: Linux sees it read-only, remounting it rw and writing the
#          device fail, and the image's checksum is unchanged.
#     vdc: a raw scratch image for sequential dd figures (printed, not asserted).
#   boot 2 (no initrd: root=/dev/vda, the kernel mounts an ext4 root with our /sbin/init):
#     the guest writes a file and a raw pattern to vdb, runs sync, says so, and vmon is then
#     killed with SIGKILL: both must be in the host's image files.
#   boots 3 and 4 (qcow2, when qemu-img is installed): ext4 on a qcow2 overlay over a raw base;
#     boot 3 reads the base's file and writes its own; qemu-img check is clean, the base is
#     unchanged; boot 4 runs on a third layer over the overlay and reads both files back.
#     A damaged qcow2 image (bad L1 offset) is refused and left unchanged.
#   fio on the host against the scratch image, for comparison (printed, not asserted).
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh

if ! have_kvm; then
	skip blk "no usable /dev/kvm on this machine"
	exit 0
fi
for tool in mkfs.ext4 debugfs e2fsck cpio; do
	if ! command -v $tool >/dev/null; then
		skip blk "$tool is not installed (scripts/install-deps.sh installs e2fsprogs and cpio)"
		exit 0
	fi
done
if ! scripts/build-guest.sh >"$TEST_TMP/build-guest.log" 2>&1; then
	fail blk/build-guest "scripts/build-guest.sh failed: $(tail -5 "$TEST_TMP/build-guest.log" | tr '\n' ' ')"
	exit 0
fi
eval "$(scripts/guest-paths.sh)"
BOOT_TIMEOUT=${VMON_LINUX_BOOT_TIMEOUT:-1800}
CMDLINE="$(cat guest/cmdline 2>/dev/null || echo console=ttyS0)"
value() { tr -d '\r' <"$OUT" | sed -n "s/^BLK-TEST $1=//p" | head -1; }
logs() { cp "$OUT" "build/test-logs/$1.console" 2>/dev/null; cp "$ERR" "build/test-logs/$1.stderr" 2>/dev/null; }
mkdir -p build/test-logs

# ---- option and image errors: one clear sentence naming the file, exit status 2 ----
run_vmon blk-missing 60 run --kernel "$GUEST_KERNEL" --disk "$TEST_TMP/nope.img"
expect blk/missing-image "a missing image is an error naming it" \
	sh -c "[ $RC -ne 0 ] && grep -q 'disk image $TEST_TMP/nope.img does not exist' $ERR"
run_vmon blk-dir 60 run --kernel "$GUEST_KERNEL" --disk "$TEST_TMP"
expect blk/directory-image "a directory is refused" sh -c "[ $RC -ne 0 ] && grep -q 'is a directory' $ERR"
run_vmon blk-badopt 60 run --kernel "$GUEST_KERNEL" --disk "$TEST_TMP/x.img,sparkly"
expect blk/bad-option "an unknown --disk setting is refused" sh -c "[ $RC -eq 2 ] && grep -q 'unknown setting' $ERR"

# ---- boot 1 ----
RW=$TEST_TMP/rw.img RO=$TEST_TMP/ro.img SCRATCH=$TEST_TMP/scratch.img
truncate -s 64M "$RW"
mkfs.ext4 -q -F "$RW"
mkdir -p "$TEST_TMP/ro-content"
echo "read-only content" >"$TEST_TMP/ro-content/readme.txt"
truncate -s 16M "$RO"
mkfs.ext4 -q -F -d "$TEST_TMP/ro-content" "$RO"
ro_sum_before=$(sha256sum <"$RO")
truncate -s 40M "$SCRATCH"

mkdir -p "$TEST_TMP/init1"
cat >"$TEST_TMP/init1/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
$B mount -t sysfs sysfs /sys
say() { echo "BLK-TEST $1=$2"; }
up() { $B cut -d' ' -f1 /proc/uptime; }
# elapsed SECONDS-BEFORE: seconds since then, from /proc/uptime (10 ms resolution)
elapsed() { $B awk -v a="$1" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }'; }
say serial "$($B cat /sys/block/vda/serial)"
say vda_sectors "$($B cat /sys/block/vda/size)"
say vdb_ro "$($B cat /sys/block/vdb/ro)"
say vda_ro "$($B cat /sys/block/vda/ro)"
$B mkdir -p /mnt /ro
if $B mount -t ext4 /dev/vda /mnt; then say mounted yes; fi
echo "written by the guest through virtio-blk" >/mnt/hello.txt
$B dd if=/dev/urandom of=/mnt/random.bin bs=4096 count=64 2>/dev/null
say random_sum "$($B sha256sum /mnt/random.bin | $B cut -d' ' -f1)"
$B sync
if $B umount /mnt; then say umounted yes; fi
if $B mount -t ext4 -o ro /dev/vdb /ro; then say ro_mounted yes; fi
say ro_file "$($B cat /ro/readme.txt)"
if $B mount -o remount,rw /ro 2>/dev/null; then say remount_rw succeeded; else say remount_rw failed; fi
if echo x | $B dd of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; then say dd_write succeeded; else say dd_write failed; fi
$B umount /ro
# Figures: 16 MiB sequential writes (through the page cache then fsync, and O_DIRECT), an O_DIRECT
# read, and 4 KiB O_DIRECT reads one at a time (latency). Guest time, from /proc/uptime.
t=$(up); $B dd if=/dev/zero of=/dev/vdc bs=1M count=16 conv=fsync 2>/dev/null; say write_s "$(elapsed $t)"
t=$(up); $B dd if=/dev/zero of=/dev/vdc bs=1M count=16 oflag=direct 2>/dev/null; say dwrite_s "$(elapsed $t)"
t=$(up); $B dd if=/dev/vdc of=/dev/null bs=1M count=16 iflag=direct 2>/dev/null; say read_s "$(elapsed $t)"
t=$(up); $B dd if=/dev/vdc of=/dev/null bs=4096 count=1000 iflag=direct 2>/dev/null; say read4k_1000_s "$(elapsed $t)"
say done yes
$B poweroff -f
INIT
chmod +x "$TEST_TMP/init1/init"
(cd "$TEST_TMP/init1" && echo init | cpio -o -H newc >../init1.cpio 2>/dev/null)
cat "$GUEST_INITRD" "$TEST_TMP/init1.cpio" >"$TEST_TMP/initrd1.cpio"

start=$(date +%s)
run_vmon blk-boot "$BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd1.cpio" --memory 128M \
	--cmdline "$CMDLINE" --disk "$RW,serial=vmon-test-serial" --disk "$RO,readonly" --disk "$SCRATCH"
echo "    blk guest: boot to poweroff took $(($(date +%s) - start))s (exit $RC)"
logs blk-boot

expect blk/boot "the guest ran its checks and powered off" sh -c "[ $RC -eq 0 ] && [ '$(value done)' = yes ]"
expect blk/capacity "vda has 64 MiB in 512-byte sectors ($(value vda_sectors))" sh -c "[ '$(value vda_sectors)' = 131072 ]"
expect blk/serial "/sys/block/vda/serial shows serial=ID ($(value serial))" sh -c "[ '$(value serial)' = vmon-test-serial ]"
expect blk/mount "the guest mounted the host-made ext4 image" sh -c "[ '$(value mounted)' = yes ] && [ '$(value umounted)' = yes ]"
host_file=$(debugfs -R 'cat /hello.txt' "$RW" 2>/dev/null)
expect blk/write-reaches-host "the guest's file is in the host image ($host_file)" \
	sh -c "[ '$host_file' = 'written by the guest through virtio-blk' ]"
host_sum=$(debugfs -R 'cat /random.bin' "$RW" 2>/dev/null | sha256sum | cut -d' ' -f1)
expect blk/data-intact "256 KiB of random data read back on the host match the guest's checksum" \
	sh -c "[ -n '$(value random_sum)' ] && [ '$host_sum' = '$(value random_sum)' ]"
expect blk/fsck-clean "the image is a clean file system after the guest unmounted it" \
	sh -c "e2fsck -fn '$RW' >'$TEST_TMP/fsck-rw.log' 2>&1"
expect blk/readonly-flag "Linux sees the readonly disk read-only (ro=$(value vdb_ro)) and vda writable (ro=$(value vda_ro))" \
	sh -c "[ '$(value vdb_ro)' = 1 ] && [ '$(value vda_ro)' = 0 ]"
expect blk/readonly-read "the readonly disk mounts and reads ($(value ro_file))" \
	sh -c "[ '$(value ro_mounted)' = yes ] && [ '$(value ro_file)' = 'read-only content' ]"
expect blk/readonly-refuses "remount rw ($(value remount_rw)) and a raw write ($(value dd_write)) fail" \
	sh -c "[ '$(value remount_rw)' = failed ] && [ '$(value dd_write)' = failed ]"
expect blk/readonly-unchanged "the readonly image's checksum is unchanged" sh -c "[ '$(sha256sum <"$RO")' = '$ro_sum_before' ]"
expect blk/no-sanitizer-report "no AddressSanitizer/UBSan report" sh -c "! grep -qE 'Sanitizer|runtime error' $ERR"

mbps() { awk -v s="$1" 'BEGIN { if (s > 0) printf "%.1f MiB/s", 16 / s; else printf "n/a" }'; }
echo "    guest dd, 16 MiB to /dev/vdc bs=1M conv=fsync: $(value write_s) s ($(mbps "$(value write_s)"))"
echo "    guest dd, 16 MiB to /dev/vdc bs=1M oflag=direct: $(value dwrite_s) s ($(mbps "$(value dwrite_s)"))"
echo "    guest dd, 16 MiB from /dev/vdc bs=1M iflag=direct: $(value read_s) s ($(mbps "$(value read_s)"))"
echo "    guest dd, 1000 x 4 KiB from /dev/vdc iflag=direct: $(value read4k_1000_s) s" \
	"($(awk -v s="$(value read4k_1000_s)" 'BEGIN { printf "%.0f us per read", s * 1000 }'))"

# ---- boot 2: ext4 root on vda, raw pattern on vdb, SIGKILL after the guest's sync ----
ROOTDIR=$TEST_TMP/rootfs ROOT=$TEST_TMP/root.img RAW=$TEST_TMP/raw.img
mkdir -p "$ROOTDIR"
(cd "$ROOTDIR" && cpio -id --quiet <"$GUEST_INITRD")
mkdir -p "$ROOTDIR/sbin" "$ROOTDIR/proc" "$ROOTDIR/sys" "$ROOTDIR/dev"
head -c 1048576 /dev/urandom >"$ROOTDIR/pattern.bin"
cat >"$ROOTDIR/sbin/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
echo "BLK-TEST root=$($B awk '$2 == "/" { print $1 " " $3 }' /proc/mounts | $B tail -1)"
echo "durable after sync" >/durable.txt
$B dd if=/pattern.bin of=/dev/vdb bs=65536 2>/dev/null
$B sync
echo "BLK-TEST synced=yes"
while :; do $B sleep 100; done
INIT
chmod +x "$ROOTDIR/sbin/init"
truncate -s 64M "$ROOT"
mkfs.ext4 -q -F -d "$ROOTDIR" "$ROOT"
truncate -s 8M "$RAW"

OUT=$TEST_TMP/blk-root.out ERR=$TEST_TMP/blk-root.err
"$VMON" run --kernel "$GUEST_KERNEL" --memory 128M --cmdline "$CMDLINE root=/dev/vda rw init=/sbin/init" \
	--disk "$ROOT" --disk "$RAW" </dev/null >"$OUT" 2>"$ERR" &
pid=$!
start=$(date +%s)
while [ $(($(date +%s) - start)) -lt "$BOOT_TIMEOUT" ] && kill -0 $pid 2>/dev/null; do
	grep -q 'BLK-TEST synced=yes' "$OUT" 2>/dev/null && break
	sleep 1
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
RC=$?
echo "    blk root guest: boot to sync took $(($(date +%s) - start))s, then SIGKILL"
logs blk-root
expect blk/root-on-vda "the kernel mounted /dev/vda as an ext4 root ($(value root))" \
	sh -c "[ '$(value root)' = '/dev/root ext4' ] || [ '$(value root)' = '/dev/vda ext4' ]"
expect blk/sync-returned "the guest's sync returned" grep -q 'BLK-TEST synced=yes' "$OUT"
expect blk/raw-durable "the 1 MiB written to vdb before sync is in the host file after SIGKILL" \
	sh -c "head -c 1048576 '$RAW' | cmp -s - '$ROOTDIR/pattern.bin'"
# The journal holds the metadata after sync: let e2fsck replay it, as the next mount would.
e2fsck -fy "$ROOT" >"$TEST_TMP/e2fsck.log" 2>&1
durable=$(debugfs -R 'cat /durable.txt' "$ROOT" 2>/dev/null)
expect blk/file-durable "the file written before sync is in the root image after SIGKILL ($durable)" \
	sh -c "[ '$durable' = 'durable after sync' ]"

# ---- boots 3 and 4: ext4 on qcow2 layers over a raw base ----
if command -v qemu-img >/dev/null; then
	QBASE=$TEST_TMP/qbase.raw QOVL=$TEST_TMP/qovl.qcow2 QTOP=$TEST_TMP/qtop.qcow2
	mkdir -p "$TEST_TMP/qbase-content"
	echo "from the raw base" >"$TEST_TMP/qbase-content/base.txt"
	truncate -s 64M "$QBASE"
	mkfs.ext4 -q -F -d "$TEST_TMP/qbase-content" "$QBASE"
	qbase_sum=$(sha256sum <"$QBASE")
	# Relative backing names: resolved from the overlay's directory.
	(cd "$TEST_TMP" && qemu-img create -q -f qcow2 -b qbase.raw -F raw qovl.qcow2)

	mkdir -p "$TEST_TMP/init3"
	cat >"$TEST_TMP/init3/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs devtmpfs /dev
say() { echo "BLK-TEST $1=$2"; }
$B mkdir -p /mnt
if $B mount -t ext4 /dev/vda /mnt; then say q_mounted yes; fi
if [ -e /mnt/overlay.txt ]; then
	# Boot 4: both files back, through a third layer.
	say q_base2 "$($B cat /mnt/base.txt)"
	say q_overlay2 "$($B cat /mnt/overlay.txt)"
	say q_random2 "$($B sha256sum /mnt/random.bin | $B cut -d' ' -f1)"
else
	say q_base "$($B cat /mnt/base.txt)"
	echo "written on the qcow2 overlay" >/mnt/overlay.txt
	$B dd if=/dev/urandom of=/mnt/random.bin bs=4096 count=256 2>/dev/null
	say q_random "$($B sha256sum /mnt/random.bin | $B cut -d' ' -f1)"
	$B fstrim /mnt 2>/dev/null # discard through the overlay: frees clusters
fi
$B sync
if $B umount /mnt; then say q_umounted yes; fi
say q_done yes
$B poweroff -f
INIT
	chmod +x "$TEST_TMP/init3/init"
	(cd "$TEST_TMP/init3" && echo init | cpio -o -H newc >../init3.cpio 2>/dev/null)
	cat "$GUEST_INITRD" "$TEST_TMP/init3.cpio" >"$TEST_TMP/initrd3.cpio"

	run_vmon blk-qcow2 "$BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd3.cpio" --memory 128M \
		--cmdline "$CMDLINE" --disk "$QOVL"
	logs blk-qcow2
	expect blk/qcow2-boot "the guest mounted ext4 on the qcow2 overlay, wrote and unmounted it" \
		sh -c "[ $RC -eq 0 ] && [ '$(value q_done)' = yes ] && [ '$(value q_mounted)' = yes ] && [ '$(value q_umounted)' = yes ]"
	expect blk/qcow2-reads-base "the base's file reads through the overlay ($(value q_base))" \
		sh -c "[ '$(value q_base)' = 'from the raw base' ]"
	expect blk/qcow2-check "qemu-img check finds no errors or leaks in the overlay" \
		sh -c "qemu-img check -q '$QOVL' >'$TEST_TMP/qcheck.log' 2>&1"
	expect blk/qcow2-base-unchanged "the raw base's checksum is unchanged" sh -c "[ '$(sha256sum <"$QBASE")' = '$qbase_sum' ]"
	qemu-img convert -O raw "$QOVL" "$TEST_TMP/qflat.raw"
	host_file=$(debugfs -R 'cat /overlay.txt' "$TEST_TMP/qflat.raw" 2>/dev/null)
	expect blk/qcow2-host-view "qemu-img reads the guest's file from the overlay ($host_file)" \
		sh -c "[ '$host_file' = 'written on the qcow2 overlay' ]"
	expect blk/qcow2-fsck "the overlay holds a clean file system" sh -c "e2fsck -fn '$TEST_TMP/qflat.raw' >/dev/null 2>&1"
	q_random=$(value q_random)

	qovl_sum=$(sha256sum <"$QOVL")
	(cd "$TEST_TMP" && qemu-img create -q -f qcow2 -b qovl.qcow2 -F qcow2 qtop.qcow2)
	run_vmon blk-qcow2-2 "$BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$TEST_TMP/initrd3.cpio" --memory 128M \
		--cmdline "$CMDLINE" --disk "$QTOP"
	logs blk-qcow2-2
	expect blk/qcow2-chain "a second boot on a 3-layer chain reads both files back" \
		sh -c "[ $RC -eq 0 ] && [ '$(value q_base2)' = 'from the raw base' ] && [ '$(value q_overlay2)' = 'written on the qcow2 overlay' ] && [ -n '$q_random' ] && [ '$(value q_random2)' = '$q_random' ]"
	expect blk/qcow2-chain-check "qemu-img check is clean on the top layer; the layers below are unchanged" \
		sh -c "qemu-img check -q '$QTOP' && [ '$(sha256sum <"$QOVL")' = '$qovl_sum' ] && [ '$(sha256sum <"$QBASE")' = '$qbase_sum' ]"

	cp "$QOVL" "$TEST_TMP/qbad.qcow2"
	printf '\000\000\000\000\000\001\043\105' | dd of="$TEST_TMP/qbad.qcow2" bs=1 seek=40 conv=notrunc 2>/dev/null
	qbad_sum=$(sha256sum <"$TEST_TMP/qbad.qcow2")
	run_vmon blk-qcow2-bad 60 run --kernel "$GUEST_KERNEL" --disk "$TEST_TMP/qbad.qcow2"
	expect blk/qcow2-damaged "a qcow2 image with a bad L1 offset is refused naming the problem, unchanged" \
		sh -c "[ $RC -ne 0 ] && grep -q 'L1 table offset' $ERR && [ '$(sha256sum <"$TEST_TMP/qbad.qcow2")' = '$qbad_sum' ]"
	expect blk/qcow2-no-sanitizer-report "no AddressSanitizer/UBSan report" \
		sh -c "! grep -qE 'Sanitizer|runtime error' $TEST_TMP/blk-qcow2.err $TEST_TMP/blk-qcow2-2.err"
else
	skip blk/qcow2 "qemu-img is not installed (scripts/install-deps.sh installs qemu-utils)"
fi

# ---- the same scratch image from the host, for comparison ----
if command -v fio >/dev/null; then
	fio_run() { # fio_run NAME ARGS...: prints bandwidth and mean completion latency
		local name=$1
		shift
		fio --name="$name" --filename="$SCRATCH" --size=16M --ioengine=io_uring --output-format=terse \
			--terse-version=3 "$@" 2>/dev/null |
			awk -F';' -v n="$name" '{ rbw=$7; wbw=$48; rlat=$40; wlat=$81;
				if (rbw > 0) printf "    host fio %s: %.1f MiB/s, mean latency %.0f us\n", n, rbw / 1024, rlat;
				else printf "    host fio %s: %.1f MiB/s, mean latency %.0f us\n", n, wbw / 1024, wlat }'
	}
	fio_run seq-write-1M --rw=write --bs=1M --end_fsync=1
	fio_run seq-read-1M-direct --rw=read --bs=1M --direct=1
	fio_run read-4k-direct-qd1 --rw=read --bs=4k --direct=1 --number_ios=1000
fi
