# The two commands a newcomer needs: `make run` and `make test`.
PRESET ?= release
BUILD  := build/$(PRESET)

.PHONY: all deps configure build run test test-release test-asan bench fuzz clean

all: build

deps:
	bash packaging/install-deps.sh

configure: deps
	cmake --preset $(PRESET) >/dev/null

build: configure
	cmake --build --preset $(PRESET)

# Starts relayd on the development config: 127.0.0.1:2525, spool under ./run/.
run: build
	mkdir -p run
	./$(BUILD)/relayd/relayd --config packaging/relayd-dev.toml

# Every test on the optimised build, then again on the sanitizer build
# (address + undefined behaviour), less the load and kill -9 runs there (and the
# power-loss test, which is not registered there). A test that could not run (a
# tool missing, not root, ...) is reported as Skipped, not passed: ctest lists
# it under "The following tests did not run", and the reasons follow.
# CTEST_ARGS narrows a run, e.g. make test-release CTEST_ARGS='-L e2e'.
test: test-release test-asan

# The skip reasons of the last ctest run in $(1): unittest's (relayd_harness.main)
# and GoogleTest's.
define skip_reasons
	@grep -hE '^SKIPPED [^ ]+: |^\[  SKIPPED \] [A-Za-z0-9_/]+\.[A-Za-z0-9_/]+' \
	  $(1)/Testing/Temporary/LastTest.log 2>/dev/null | sort -u || true
endef

test-release: build
	ctest --test-dir $(BUILD) --output-on-failure -j2 $(CTEST_ARGS)
	$(call skip_reasons,$(BUILD))

ASAN_SKIP := ^(e2e_load|e2e_crash|e2e_delivery_load)$$
test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan
	ctest --test-dir build/asan --output-on-failure -j2 -E '$(ASAN_SKIP)' $(CTEST_ARGS)
	$(call skip_reasons,build/asan)

bench: build
	bash tests/bench/bench.sh

# Runs every libFuzzer target for FUZZ_SECONDS each (clang-16 is installed on demand).
FUZZ_SECONDS ?= 60
fuzz:
	bash packaging/install-deps.sh --fuzz
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz
	bash tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build run
