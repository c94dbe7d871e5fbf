# One Makefile for the whole pipeline.
#
#   make deps       install the Debian packages the project needs (only those missing)
#   make            build every library, executable and test program into build/
#   make test       deps + build + run every test (the README's test command)
#   make asan       the same build with AddressSanitizer and UBSan, into build-asan/
#   make asan-test  run the unit tests of the sanitizer build
#   make asan-it    run the integration tests (tests/it_*.sh) on the sanitizer build
#   make valgrind-test  every unit test, and a short loader -> augmenter run, under valgrind
#   make fuzz       build one libFuzzer target per message decoder (clang), into build-fuzz/
#   make fuzz-run   run every fuzzer for FUZZ_SECONDS (default 10) on its corpus
#   make bench      benchmarks, JSON lines on stdout
#   make MPI=0      build without MPI even when it is installed (use another BUILD=)
#
# Each folder describes its own pieces in a module.mk fragment, using the
# helpers below: $(call add_lib,NAME), $(call add_prog,NAME) (build/bin: what users
# run), $(call add_tool,NAME) (build/tools: programs tests and benchmarks drive),
# $(call add_test,NAME) and $(call add_fuzzer,NAME). A program, tool or test
# whose NAME_LIBS has dist also links MPI's libraries.

BUILD    ?= build
CC       ?= cc
PKGS     := libzmq msgpack vips openblas cmocka jansson zlib libjpeg

# Debian packages: what building and running the product needs, and what the
# tests and benchmarks need beside it (fuzzing, reference scripts).
DEB_BUILD := gcc make pkg-config libzmq3-dev libmsgpack-dev libvips-dev \
             libopenblas-dev zlib1g-dev libcmocka-dev libjansson-dev \
             dataset-fashion-mnist gnuplot-nox libopenmpi-dev openmpi-bin
DEB_TEST  := clang libclang-rt-14-dev python3-zmq python3-msgpack python3-numpy python3-torch chromium \
             python3-pil valgrind time iproute2
DEB_BENCH := python3-pil python3-numpy python3-torch python3-torchvision

# MPI (Open MPI, pkg-config ompi-c): data-parallel training over processes
# (dist/). Found by default; MPI=0 builds without it (one process only).
# SSL_HAVE_MPI tells the code; only dist/ includes mpi.h, and only the
# programs that link dist get its libraries.
MPI      ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
MPI_CFLAGS := -DSSL_HAVE_MPI $(shell pkg-config --cflags ompi-c)
MPI_LDLIBS := $(shell pkg-config --libs ompi-c)
else
MPI_CFLAGS :=
MPI_LDLIBS :=
endif

WARN     := -Wall -Wextra -Wshadow -Wno-unused-parameter
ifneq ($(WERROR),)
WARN     += -Werror
endif
OPT      ?= -O2
SANFLAGS ?=
CFLAGS   := -std=gnu11 $(OPT) -g $(WARN) $(SANFLAGS) -MMD -MP -I. \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  := $(SANFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

# V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

LIBS  :=
PROGS :=
TESTS :=
TOOLS :=
FUZZERS :=

# $(call add_lib,NAME): $(BUILD)/lib/libNAME.a from $(NAME_SRCS)
define add_lib
$(1)_OBJS := $$(patsubst %.c,$$(BUILD)/obj/%.o,$$($(1)_SRCS))
$$(BUILD)/lib/lib$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(@D)
	@echo "  AR    $$@"
	$$(Q)$$(AR) rcs $$@ $$^
LIBS += $$(BUILD)/lib/lib$(1).a
endef

# $(call add_prog,NAME): $(BUILD)/bin/NAME from $(NAME_SRCS) and the libraries $(NAME_LIBS)
define add_prog
$(1)_OBJS := $$(patsubst %.c,$$(BUILD)/obj/%.o,$$($(1)_SRCS))
$$(BUILD)/bin/$(1): $$($(1)_OBJS) $$(foreach l,$$($(1)_LIBS),$$(BUILD)/lib/lib$$(l).a)
	@mkdir -p $$(@D)
	@echo "  LINK  $$@"
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(if $$(filter dist,$$($(1)_LIBS)),$$(MPI_LDLIBS))
PROGS += $$(BUILD)/bin/$(1)
endef

# $(call add_tool,NAME): $(BUILD)/tools/NAME, a program the tests or benchmarks
# drive (not installed for users), from $(NAME_SRCS) and the libraries $(NAME_LIBS)
define add_tool
$(1)_OBJS := $$(patsubst %.c,$$(BUILD)/obj/%.o,$$($(1)_SRCS))
$$(BUILD)/tools/$(1): $$($(1)_OBJS) $$(foreach l,$$($(1)_LIBS),$$(BUILD)/lib/lib$$(l).a)
	@mkdir -p $$(@D)
	@echo "  LINK  $$@"
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(if $$(filter dist,$$($(1)_LIBS)),$$(MPI_LDLIBS))
TOOLS += $$(BUILD)/tools/$(1)
endef

# $(call add_test,NAME): $(BUILD)/tests/NAME from tests/NAME.c and the libraries $(NAME_LIBS)
define add_test
$$(BUILD)/tests/$(1): $$(BUILD)/obj/tests/$(1).o $$(foreach l,$$($(1)_LIBS),$$(BUILD)/lib/lib$$(l).a)
	@mkdir -p $$(@D)
	@echo "  LINK  $$@"
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(if $$(filter dist,$$($(1)_LIBS)),$$(MPI_LDLIBS))
TESTS += $$(BUILD)/tests/$(1)
endef

# $(call add_fuzzer,NAME): build-fuzz/NAME from tests/fuzz/NAME.c and $(NAME_SRCS), with clang
define add_fuzzer
build-fuzz/$(1): tests/fuzz/$(1).c $$($(1)_SRCS)
	@mkdir -p $$(@D)
	clang -g -O1 -I. -fsanitize=fuzzer,address,undefined $$(shell pkg-config --cflags msgpack) \
	    -o $$@ $$^ $$(shell pkg-config --libs msgpack)
FUZZERS += build-fuzz/$(1)
endef

include $(sort $(wildcard */module.mk))

.DEFAULT_GOAL := all
.PHONY: all deps deps-bench test check unit-check asan asan-test asan-it valgrind-test fuzz fuzz-run bench clean

all: $(LIBS) $(PROGS) $(TESTS) $(TOOLS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Installs, with apt-get, each listed Debian package that is not installed yet;
# runs apt-get update once, and only when something is missing.
define apt_install
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	    echo "deps: installing$$missing"; \
	    $$sudo apt-get update -q && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(DEB_BUILD) $(DEB_TEST))

deps-bench:
	$(call apt_install,$(DEB_BENCH))

# The test command: install what is missing, build with warnings as errors, run everything.
test: deps
	$(MAKE) WERROR=1 all
	$(MAKE) WERROR=1 check

check: $(TESTS) $(PROGS) $(TOOLS)
	@BUILD=$(BUILD) tests/run_all.sh $(TESTS)

SAN_BUILD ?= build-asan
SAN_MAKE = $(MAKE) BUILD=$(SAN_BUILD) OPT=-O1 \
    SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

asan:
	$(SAN_MAKE) all

asan-test:
	$(SAN_MAKE) WERROR=1 all
	$(SAN_MAKE) unit-check

# The integration scripts on the sanitizer build: every stage they start
# aborts on a memory error; leaks are not checked there (the stages are often
# ended by signals), valgrind-test checks them.
asan-it:
	$(SAN_MAKE) WERROR=1 all
	@ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    BUILD=$(SAN_BUILD) tests/run_all.sh

# Every unit test program, then tests/valgrind_pipeline.sh, under valgrind:
# a memory error or a definite/indirect leak fails. tests/valgrind.supp holds
# the libraries' own one-time allocations. VIPS_NOVECTOR: valgrind cannot run
# the SIMD code libvips generates at run time (orc). TEST_UNDER_VALGRIND: a unit
# test that cannot run there reports itself skipped. VALGRIND_TESTS picks a subset.
VALGRIND := valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
    --num-callers=40 --suppressions=tests/valgrind.supp
VALGRIND_TESTS ?= $(TESTS)
valgrind-test: $(TESTS) $(PROGS) $(TOOLS)
	@VIPS_NOVECTOR=1 OPENBLAS_NUM_THREADS=1 TEST_UNDER_VALGRIND=1 TEST_WRAPPER="$(VALGRIND)" \
	    BUILD=$(BUILD) tests/run_all.sh --unit-only $(VALGRIND_TESTS)
	@VIPS_NOVECTOR=1 OPENBLAS_NUM_THREADS=1 VALGRIND="$(VALGRIND)" BUILD=$(BUILD) bash tests/valgrind_pipeline.sh

unit-check: $(TESTS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    BUILD=$(BUILD) tests/run_all.sh --unit-only $(TESTS)

fuzz: $(FUZZERS)

# Runs each fuzzer on its kept corpus (tests/fuzz/corpus/NAME) for FUZZ_SECONDS;
# new inputs it finds go to build-fuzz/corpus/NAME, not into the source tree.
FUZZ_SECONDS ?= 10
fuzz-run: fuzz
	@for f in $(FUZZERS); do \
	    name=$$(basename $$f); mkdir -p build-fuzz/corpus/$$name tests/fuzz/corpus/$$name; \
	    echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	    if ! $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
	        build-fuzz/corpus/$$name tests/fuzz/corpus/$$name > build-fuzz/$$name.log 2>&1; then \
	        tail -n 40 build-fuzz/$$name.log; echo "fuzz: $$name FAILED (log: build-fuzz/$$name.log)"; exit 1; \
	    fi; \
	    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' build-fuzz/$$name.log; \
	done

bench: deps deps-bench all
	@bench/run_all.sh

clean:
	rm -rf build $(SAN_BUILD) build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
