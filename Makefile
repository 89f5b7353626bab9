# SPDX-License-Identifier: BSD-2-Clause
# A thin driver over CMake. Every target first makes sure the dependencies are there.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_GEN  := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all build asan test interop deps clean help

all: build

help:
	@echo "make            build build/qvet and libqvet (gcc, -Werror)"
	@echo "make asan       the same with ASan+UBSan (clang) into $(ASAN_BUILD)/"
	@echo "make test       build both, run the Check suites, the malformed-image suite"
	@echo "                and the qemu-img interop gate (scripts/interop.sh)"
	@echo "make interop    only the qemu-img interop gate (read and write)"
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

interop: build
	QVET=$(BUILD)/qvet bash scripts/interop.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
