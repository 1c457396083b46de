# mamlrun: make (build), make test, make run, make bench, make sanitize, make install, make deb
PKGS     := lua5.4 openblas libpng
CC       ?= cc
OPT      ?= -O3 -march=x86-64-v2 -mtune=generic
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Ivm -Iops \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread -ldl
# sanitizer flags (`make sanitize` sets them): appended whatever CFLAGS came from the environment or
# the command line, so the sanitized build is sanitized
SAN      ?=
override CFLAGS += $(SAN)
PREFIX   ?= /usr/local
BUILD    ?= build

# Open MPI (optional): with it, vm/lua_mpi.c is the "mpi" module (mpirun -np P ./mamlrun ...); without
# it, a one-process stub. Found with pkg-config (ompi-c), else mpicc; MPI=0 forces the stub (use another
# BUILD folder when switching: objects do not depend on the flags).
MPI      ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || \
              (mpicc --showme:compile >/dev/null 2>&1 && echo 1) || echo 0)
ifeq ($(MPI),1)
ifeq ($(shell pkg-config --exists ompi-c 2>/dev/null && echo 1),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c)
LDLIBS     += $(shell pkg-config --libs ompi-c)
else
MPI_CFLAGS := $(shell mpicc --showme:compile)
LDLIBS     += $(shell mpicc --showme:link)
endif
endif

# oneDNN (libdnnl-dev; `make deps` installs it): its direct kernels run the channels-last convolutions
# (ops/conv_dnnl.c), 1.1-1.25x faster MAML iterations; without it, or with DNNL=0 (use another BUILD
# folder when switching), im2col + OpenBLAS does
DNNL     ?= $(shell test -f /usr/include/oneapi/dnnl/dnnl.h && echo 1 || echo 0)
ifeq ($(DNNL),1)
$(BUILD)/ops/conv_dnnl.o: CFLAGS += -DMAMLRUN_DNNL
LDLIBS   += -ldnnl -lgomp
endif

# fuzz targets (see "fuzzing" below): `make test` and `make sanitize` build them when clang is installed
FUZZ_CC    ?= clang
FUZZ_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
HAVE_FUZZ  := $(shell command -v $(FUZZ_CC) >/dev/null 2>&1 && echo fuzz)

CORE_SRC := $(filter-out vm/main.c,$(wildcard vm/*.c)) $(wildcard ops/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
HEADERS  := $(wildcard vm/*.h ops/*.h)
CTESTS   := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

.PHONY: all test run bench bench-tools profile sanitize install uninstall deb data format clean deps deps-fuzz check-deps fuzz fuzz-targets

all: mamlrun

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/vm/lua_mpi.o: CFLAGS += $(if $(filter 1,$(MPI)),-DMAMLRUN_MPI $(MPI_CFLAGS))

$(BUILD)/libmamlrun.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

mamlrun: $(BUILD)/vm/main.o $(BUILD)/libmamlrun.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/c/%.c tests/c/tap.h $(BUILD)/libmamlrun.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmamlrun.a $(LDLIBS)

ctests: $(CTESTS)

test: mamlrun $(CTESTS) $(HAVE_FUZZ)
	@tests/run_all.sh

# the binary, the Lua library, the experiments, mamlrun-data, the manual pages and the docs under
# $(DESTDIR)$(PREFIX), with a manifest that `make uninstall` removes exactly (pkg/install.sh says what
# goes where). INSTALL_BIN: the binary to install (the tests install the one they test).
INSTALL_BIN ?= mamlrun
install: $(INSTALL_BIN)
	@PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' BIN='$(INSTALL_BIN)' sh pkg/install.sh install

uninstall:
	@PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' sh pkg/install.sh uninstall

# a Debian package of this build in build/deb/ (pkg/deb.sh: dpkg-deb, dependencies from dpkg-shlibdeps,
# checked with lintian when it is installed)
deb: mamlrun
	@BUILD='$(BUILD)' sh pkg/deb.sh

# ---------------------------------------------------------------- set-up and running
DEBIAN_PKGS := build-essential pkg-config liblua5.4-dev lua5.4 libopenblas-dev libpng-dev lua-busted unzip libdnnl-dev
EXPERIMENT  ?= experiments/omniglot5w1s.lua

# install missing Debian packages (as root, or with sudo when available)
deps:
	@missing=$$(for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y $$missing || { $$SUDO apt-get update && $$SUDO apt-get install -y $$missing; }; \
	fi

# clang and libFuzzer for the fuzz targets of `make test` (skipped without them; CI installs them)
FUZZ_PKGS   := clang libclang-rt-14-dev
deps-fuzz:
	@$(MAKE) --no-print-directory deps DEBIAN_PKGS="$(FUZZ_PKGS)"

# Omniglot into data/omniglot/ (OMNIGLOT_ZIPS=DIR: the two zips from a local folder; see docs/omniglot.md)
data:
	@sh data/fetch_omniglot.sh

# everything from a fresh clone: dependencies, build, data, the main experiment
run: deps
	$(MAKE) mamlrun
	$(MAKE) data
	./mamlrun $(EXPERIMENT) $(ARGS)

# ---------------------------------------------------------------- checks
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

# AddressSanitizer + UndefinedBehaviorSanitizer build in build-san/, then the whole test suite on it;
# MAMLRUN_EXPECT_ASAN=1 makes the tests check that the binaries they run are sanitized
sanitize: $(HAVE_FUZZ)
	$(MAKE) BUILD=build-san OPT="$(SAN_FLAGS)" SAN="$(SAN_FLAGS)" mamlrun-san build-san-ctests
	BUILD=build-san MAMLRUN=./mamlrun-san MAMLRUN_EXPECT_ASAN=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1 tests/run_all.sh

# beside ./mamlrun, so that it finds lua/ the same way
mamlrun-san: $(BUILD)/vm/main.o $(BUILD)/libmamlrun.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build-san-ctests: $(CTESTS)

# ---------------------------------------------------------------- fuzzing (clang's libFuzzer)
# One target per input format, tests/fuzz/fuzz_*.c, built with clang, ASan and UBSan into build-fuzz/
# (the MPI stub). `make test` and `make sanitize` build them when clang is installed, and
# tests/suites.d/fuzz.sh runs each for a few seconds. A longer run, on a corpus of your own:
#   build-fuzz/tests/fuzz/fuzz_png -max_total_time=600 tests/fuzz/corpus-png/

fuzz:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" \
	  SAN="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" MPI=0 fuzz-targets

fuzz-targets: $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(BUILD)/libmamlrun.a $(HEADERS) $(wildcard tests/fuzz/*.h) vm/main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -DMAMLRUN_LUA_DIR='"$(abspath lua)"' -o $@ $< $(BUILD)/libmamlrun.a $(LDLIBS)

# ---------------------------------------------------------------- benchmarks
# `make bench` (bench/run_all.sh; SKIP="ceilings gemm autograd conv conv4 bn scripts maml" leaves parts out)
# first builds bench-tools: bench/ceilings.c (OpenBLAS sgemm 1024^3, the FMA peak and the memory
# bandwidth; bench/fma_peak.c is compiled once with -mavx2 -mfma and once with -mavx512f -mfma, and
# only called when the CPU has them) and bench/gemm_bench.c once per GEMM library found: OpenBLAS always; libxsmm (pkg-config
# libxsmm), oneDNN (header oneapi/dnnl/dnnl.h) and BLIS (pkg-config blis, or header blis.h) when
# installed. None of them is a dependency of the build or of `make test`: they are looked for only
# when the goal is bench or bench-tools.
BENCH_CC   = $(CC) $(CFLAGS)
GEMM_BENCH = $(BUILD)/bench/gemm_bench_openblas
ifneq ($(filter bench bench-tools,$(MAKECMDGOALS)),)
HASH := \#
HAS_HEADER = $(shell printf '$(HASH)include <$(1)>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo 1)
ifeq ($(shell pkg-config --exists libxsmm 2>/dev/null && echo 1),1)
GEMM_BENCH     += $(BUILD)/bench/gemm_bench_libxsmm
LIBS_libxsmm   := $(shell pkg-config --cflags libxsmm) -lxsmm -lxsmmnoblas -lrt -ldl
endif
ifeq ($(call HAS_HEADER,oneapi/dnnl/dnnl.h),1)
GEMM_BENCH     += $(BUILD)/bench/gemm_bench_dnnl
LIBS_dnnl      := -ldnnl
endif
ifeq ($(shell pkg-config --exists blis 2>/dev/null && echo 1),1)
GEMM_BENCH     += $(BUILD)/bench/gemm_bench_blis
LIBS_blis      := $(shell pkg-config --cflags --libs blis)
else ifeq ($(call HAS_HEADER,blis.h),1)
GEMM_BENCH     += $(BUILD)/bench/gemm_bench_blis
LIBS_blis      := -lblis
endif
endif
LIBS_openblas  := $(shell pkg-config --cflags --libs openblas 2>/dev/null)
GEMM_DEFINE_openblas := GEMM_LIB_OPENBLAS
GEMM_DEFINE_libxsmm  := GEMM_LIB_LIBXSMM
GEMM_DEFINE_dnnl     := GEMM_LIB_DNNL
GEMM_DEFINE_blis     := GEMM_LIB_BLIS

bench-tools: $(BUILD)/bench/ceilings $(GEMM_BENCH)

$(BUILD)/bench/fma_avx2.o: bench/fma_peak.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) -mavx2 -mfma -DFMA_WIDTH=8 -c $< -o $@

$(BUILD)/bench/fma_avx512.o: bench/fma_peak.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) -mavx512f -mfma -DFMA_WIDTH=16 -c $< -o $@

$(BUILD)/bench/ceilings: bench/ceilings.c $(BUILD)/bench/fma_avx2.o $(BUILD)/bench/fma_avx512.o
	$(BENCH_CC) -o $@ $^ $(LIBS_openblas) -lm -lpthread

$(BUILD)/bench/gemm_bench_%: bench/gemm_bench.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) -D$(GEMM_DEFINE_$*) -o $@ $< $(LIBS_$*) -lm -lpthread

bench: mamlrun bench-tools
	@BUILD='$(BUILD)' bench/run_all.sh

# where the time goes, per config and order (bench/profile.sh; needs perf)
profile: mamlrun
	@bench/profile.sh

format:
	clang-format -i vm/*.c vm/*.h ops/*.c ops/*.h tests/c/*.c tests/c/*.h tests/fuzz/*.c tests/fuzz/*.h bench/*.c

clean:
	rm -rf $(BUILD) build-san build-fuzz mamlrun mamlrun-san
