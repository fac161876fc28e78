# HybridCache entry points. Every target installs missing packages first, so
# `make run` and `make test` work on a fresh Debian 12 machine.
BUILD_DIR ?= build
CMAKE_FLAGS ?=
CTEST_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test test-asan test-tsan bench run demo clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS); \
	fi

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# All tests: CTest (unit, integration, python) with a summary; non-zero on any failure.
test: build
	@scripts/run-tests.sh $(BUILD_DIR) $(CTEST_FLAGS)

# The router's tests and the integration soak under AddressSanitizer +
# UndefinedBehaviorSanitizer, or ThreadSanitizer (separate build trees).
test-asan: build
	@scripts/run-sanitized-tests.sh asan

test-tsan: build
	@scripts/run-sanitized-tests.sh tsan

bench: build
	@scripts/run-benchmarks.sh $(BUILD_DIR)

run: build
	@scripts/run-stack.sh $(BUILD_DIR)

demo: build
	@scripts/demo.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR)
