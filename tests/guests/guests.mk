# Test guests: freestanding 64-bit ELF images linked at 16 MiB, entered in long mode at CPL0
# with RSI = boot_params, exactly as vmon enters a Linux vmlinux.
GUEST_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -ffreestanding -fno-pic -fno-pie -no-pie \
	-nostdlib -static -mno-red-zone -mno-sse -mno-mmx -fno-stack-protector \
	-fno-asynchronous-unwind-tables -Itests/guests -Wl,-T,tests/guests/guest.ld -Wl,--build-id=none -Wl,--no-warn-rwx-segments
GUEST_SRCS := $(filter-out tests/guests/lib.c,$(wildcard tests/guests/*.c))
GUEST_BINS := $(patsubst tests/guests/%,build/guests/%.elf,$(basename $(GUEST_SRCS)))

guests: $(GUEST_BINS)

build/guests/%.elf: tests/guests/%.c $(wildcard tests/guests/*.S) tests/guests/lib.c tests/guests/start.S tests/guests/guest.ld tests/guests/guest.h
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -o $@ tests/guests/start.S tests/guests/lib.c $< $(wildcard tests/guests/$*.S)
