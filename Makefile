# vmon build. `make` builds build/vmon; `make test` runs the whole suite; `make run` sets
# everything up and boots the default guest; `make install` installs vmon. See README.md.

CC      ?= cc
PREFIX  ?= /usr/local
# The release in VERSION, plus the commit when built from a git clone (0.1.0+g883b1bd).
VERSION := $(shell cat VERSION)$(shell git rev-parse --short HEAD 2>/dev/null | sed 's/^/+g/')
CFLAGS_COMMON := -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc -Ibuild -g -MMD -MP
# Recursive (=), not simple (:=): the packages that provide pkg-config and the -dev files may
# be installed by a prerequisite of the same make run, after this file was read, so the
# libraries are looked up only when a link command needs them.
PKG_LIBS = $(shell pkg-config --libs jansson libmicrohttpd liburing libcurl libseccomp libcap-ng gnutls)
# libslirp's .pc file requires glib's, which only its -dev package installs: fall back to -lslirp.
SLIRP_LIBS = $(shell pkg-config --libs slirp 2>/dev/null || echo -lslirp)
LIBS    = -lpthread -lz -llzma -llz4 -lzstd $(PKG_LIBS) $(SLIRP_LIBS)

CFLAGS_RELEASE := $(CFLAGS_COMMON) -O2
CFLAGS_SAN     := $(CFLAGS_COMMON) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_SAN    := -fsanitize=address,undefined

SRCS     := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)

REL_OBJS := $(SRCS:%.c=build/release/%.o)
SAN_OBJS := $(SRCS:%.c=build/san/%.o)
SAN_LIB_OBJS := $(LIB_SRCS:%.c=build/san/%.o)
REL_LIB_OBJS := $(LIB_SRCS:%.c=build/release/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/san/tests/unit/%)
# The sanitizer runtime makes system calls of its own that the seccomp filters allow only in
# that build, so the test that runs real device code under the filters also runs on release code.
REL_UNIT_BINS := build/release/tests/unit/test_sandbox_roles

.PHONY: all san unit-tests guests test run guest deps clean fuzz install FORCE
all: build/vmon

# Rewritten only when the version changes, so a new commit relinks but does not rebuild all.
build/version.h: FORCE
	@mkdir -p build
	@echo '#define VMON_VERSION "$(VERSION)"' >$@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@
build/release/src/main.o build/san/src/main.o: build/version.h

build/vmon: $(REL_OBJS)
	$(CC) -o $@ $^ $(LIBS)

build/vmon-san: $(SAN_OBJS)
	$(CC) $(LDFLAGS_SAN) -o $@ $^ $(LIBS)

build/release/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -c -o $@ $<

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SAN) -c -o $@ $<

build/san/tests/unit/%: tests/unit/%.c $(SAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SAN) -Itests -o $@ $< $(SAN_LIB_OBJS) $(LDFLAGS_SAN) $(LIBS) -lcmocka

build/release/tests/unit/%: tests/unit/%.c $(REL_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -Itests -o $@ $< $(REL_LIB_OBJS) $(LIBS) -lcmocka

san: build/vmon-san
unit-tests: $(UNIT_BINS) $(REL_UNIT_BINS)

# libFuzzer targets (clang): `make fuzz`; `scripts/run-tests.sh fuzz` runs each for a bounded time
# and scripts/fuzz-campaign.sh for longer. Every src/ object but main.c is built once into one
# instrumented archive and each tests/fuzz/fuzz_NAME.c is linked against it.
FUZZ_CC     ?= clang
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# clang warns about the kvm_msrs-with-entries structs that gcc accepts under gnu11.
FUZZ_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc -g -O1 -MMD -MP -Wno-gnu-variable-sized-type-not-at-end $(FUZZ_SAN)
FUZZ_OBJS   := $(LIB_SRCS:%.c=build/fuzz/%.o)
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

build/fuzz/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/libvmon.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libvmon.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests -o $@ $< build/fuzz/libvmon.a $(LIBS)

fuzz: $(FUZZ_BINS)

# Tiny freestanding test guests (tests/guests/*.S and *.c), booted by the tests as ELF kernels.
include tests/guests/guests.mk

# The default guest: a small Linux kernel and a busybox initramfs, cached outside the clone.
guest:
	scripts/build-guest.sh

deps:
	scripts/install-deps.sh

# `run` and `test` install packages first and only then build, in a second make that reads
# this file anew, so nothing is compiled or linked before its headers and libraries exist.
test:
	scripts/install-deps.sh test
	$(MAKE) build/vmon build/vmon-san unit-tests guests
	scripts/run-tests.sh

run:
	scripts/install-deps.sh run
	$(MAKE) build/vmon
	scripts/run-default-guest.sh

install: build/vmon
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/vmon/docs
	install -m 0755 build/vmon $(DESTDIR)$(PREFIX)/bin/vmon
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/vmon/README.md
	install -m 0644 $(wildcard docs/*.md) $(DESTDIR)$(PREFIX)/share/doc/vmon/docs/

clean:
	rm -rf build

-include $(REL_OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(UNIT_BINS:=.d) $(REL_UNIT_BINS:=.d) $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)
