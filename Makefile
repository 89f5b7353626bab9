# SPDX-License-Identifier: BSD-2-Clause
# A thin driver over CMake. Every target first makes sure the dependencies are there.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_GEN  := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all build asan test interop soak bench deps clean help fuzz coverage fuzz-bench seeds \
	triage nightly mutants

all: build

# The main job: a default soak (60 s, 64 MiB image of qemu-img's defaults), ending in the
# summary and, on a divergence, the report. SOAK_ARGS adds `qvet soak` options. Each run
# gets a new directory SOAK_DIR/run-NNNN (SOAK_DIR/latest points to it); nothing else in
# SOAK_DIR is touched, and a failed run's files stay for its replay.
SOAK_DIR  ?= reports/soak
SOAK_ARGS ?=
# The configuration matrix (qvet soak --config list) is rotated through unless SOAK_ARGS
# describes an image itself (-o or --backing) or SOAK_CONFIG names one entry.
SOAK_CONFIG ?= $(if $(findstring -o ,$(SOAK_ARGS))$(findstring --backing,$(SOAK_ARGS))$(findstring --config,$(SOAK_ARGS)),,all)

# Fuzzing (scripts/fuzz.sh): ENGINE=libfuzzer|afl, seconds per target, FUZZ_TARGETS to
# pick some of harness/fuzz/fuzz_*.c (default all).
ENGINE       ?= libfuzzer
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

# Triage (qvet triage, docs/triage.md): TRIAGE_DIRS are searched for failures (default
# reports/fuzz and reports/soak); TRIAGE_ARGS adds options (--save, -o DIR, ...).
TRIAGE_DIRS ?= $(wildcard reports/fuzz reports/soak)
TRIAGE_ARGS ?=

help:
	@echo "make soak       THE MAIN JOB: a 60 s differential soak of the engine against a raw"
	@echo "                oracle (every read compared, qemu-img check/compare as it goes);"
	@echo "                SOAK_ARGS='--seconds 600 -o cluster_size=4k --backing qcow2' etc.;"
	@echo "                each run in a new SOAK_DIR/run-NNNN (default reports/soak)"
	@echo "make            build build/qvet and libqvet (gcc, -Werror)"
	@echo "make asan       the same with ASan+UBSan (clang) into $(ASAN_BUILD)/"
	@echo "make test       build both, run the Check suites, the malformed-image suite"
	@echo "                and the qemu-img interop gate (tests/interop/gate/)"
	@echo "make bench      speed, measured not asserted: qvet vs qemu-img bench vs pread/pwrite,"
	@echo "                soak ops/s, fuzz execs/s, memory, scaling; reports/bench/latest.*"
	@echo "                (BENCH_QUICK=1: a tiny run)"
	@echo "make mutants    the mutation suite: each planted bug in tests/mutants built and"
	@echo "                soaked over the configuration matrix (MUTANT_SECONDS, 60, each);"
	@echo "                killed/total, median and worst time to kill, survivors and why"
	@echo "make interop    only the interop tests (ctest -L interop): the qemu-img gate, one"
	@echo "                script and CTest test per group in tests/interop/gate/ (-R"
	@echo "                interop.read.chains for one), and the scripts of tests/interop/"
	@echo "make fuzz       libFuzzer on every harness/fuzz target, FUZZ_SECONDS (60) each on"
	@echo "                all cores, with a status line per target; new coverage merged"
	@echo "                into corpus/, fuzzer logs and crashers to reports/fuzz/latest/"
	@echo "                (ENGINE=afl: the same under AFL++); scripts/fuzz.sh exits 0 clean,"
	@echo "                1 found something, 2 setup failed"
	@echo "make coverage   lcov line+branch coverage of engine/ (Check suites, corpus replay,"
	@echo "                a short soak) into reports/coverage/"
	@echo "make fuzz-bench fuzz execs/s per target (10 s each, one worker)"
	@echo "make seeds      rebuild the seed corpora (corpus/make-seeds.sh, needs qemu-img)"
	@echo "make triage     reproduce, classify, dedupe and minimize the failures under"
	@echo "                TRIAGE_DIRS (reports/fuzz reports/soak) into reports/triage/DATE"
	@echo "make nightly    the nightly: soaks over the configuration matrix, a libFuzzer"
	@echo "                pass, triage; NIGHTLY_SECONDS (1800), SHARD=i/N; exits 1 on a new"
	@echo "                signature"
	@echo "make deps       install the Debian packages qvet needs (scripts/install-deps.sh)"
	@echo "make clean      remove the build trees"

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_GEN) -DQVET_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@CC=clang cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DQVET_SANITIZE=ON -DQVET_WERROR=ON \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

test: build asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

soak: build
	$(BUILD)/qvet soak --under $(SOAK_DIR) $(if $(SOAK_CONFIG),--config $(SOAK_CONFIG)) $(SOAK_ARGS)

bench: build
	QVET=$(BUILD)/qvet bash scripts/bench.sh

# The mutation suite: every tests/mutants/*.patch built and soaked (MUTANT_SECONDS each).
MUTANT_SECONDS ?= 60
mutants: build
	bash tests/mutants/run.sh --seconds $(MUTANT_SECONDS) --out reports/mutants

interop: build
	cd $(BUILD) && ctest -L interop --output-on-failure -j $(JOBS)

fuzz: deps
	ENGINE=$(ENGINE) FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh $(FUZZ_TARGETS)

coverage: deps
	bash scripts/coverage.sh

fuzz-bench: deps
	bash scripts/fuzz-bench.sh $(FUZZ_TARGETS)

seeds: build
	bash corpus/make-seeds.sh $(BUILD)

triage: build asan
	$(BUILD)/qvet triage $(TRIAGE_ARGS) $(if $(TRIAGE_DIRS),$(TRIAGE_DIRS),reports)

nightly: build asan
	QVET=$(BUILD)/qvet bash scripts/nightly.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-fuzz-nosan build-afl build-cov
