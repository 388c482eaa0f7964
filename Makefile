# The two commands a newcomer needs: `make run` and `make test`.
PRESET ?= release
BUILD  := build/$(PRESET)

.PHONY: all deps configure build run test test-asan bench fuzz clean

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

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j2

test-asan:
	$(MAKE) test PRESET=asan

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
