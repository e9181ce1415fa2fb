# Troupe — every target only calls cargo or troupe (the demo is a script of troupe commands).
#   make demo   build everything and run the walk-through
#   make test   build and run all tests
CARGO   ?= cargo
TROUPE  := target/release/troupe
PORT    ?= 1900
# The plugin crate `make load` packs (a directory with a Cargo.toml building a cdylib).
PLUGIN  ?= encoders

# The metrics tests parse the endpoint's text with Python's prometheus_client (the reference
# client's parser), installed without root where tests/tests/metrics.rs looks: <target>/py.
PY_DIR    := $(or $(CARGO_TARGET_DIR),target)/py
PY_PARSER := prometheus_client==0.26.0

.PHONY: all build load demo test lint help pydeps browser

all: build

help: ## Show this help
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: PORT=$(PORT) (for load), PLUGIN=$(PLUGIN) (crate dir for load)"

build: ## Release build of the node, the CLI (target/release/troupe) and the demo plugins
	$(CARGO) build --release -p troupe -p troupe-encoders -p troupe-encoders-v2

load: build ## Build PLUGIN, pack it as src.zip, load it into the node on PORT, print the hash
	$(TROUPE) pack -o src.zip --build $(PLUGIN)
	$(TROUPE) load $(PORT) src.zip

demo: build ## Build everything and run the walk-through (nodes on free ports under a temp TROUPE_HOME)
	TROUPE=$(TROUPE) scripts/demo.sh

pydeps: ## Install Python's prometheus_client (the metrics tests' parser) into target/py
	@test -f "$(PY_DIR)/.$(PY_PARSER)" || { \
	  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
	    --upgrade --target "$(PY_DIR)" "$(PY_PARSER)" && touch "$(PY_DIR)/.$(PY_PARSER)"; }

browser: ## Install Debian's chromium and chromium-driver when missing (the dashboard's browser tests; CI runs as root)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

test: pydeps browser ## Build everything and run every test
	$(CARGO) build --workspace
	$(CARGO) test --workspace

lint: ## rustfmt and clippy, as CI would
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: ## Release build, then run the benchmark suite (table on stdout, JSON in target/bench/latest.json; see BENCHMARKS.md)
	$(CARGO) build --release -p troupe -p troupe-bench -p troupe-bench-plugin -p troupe-encoders
	target/release/troupe-bench
# bench/ is also a directory: without this, make would call the target up to date.
.PHONY: bench

# ---- trust and resilience (not part of CI) ----
FUZZ_SECONDS ?= 180
SOAK_SECONDS ?= 600
FUZZ_TARGETS := frame manifest archive

.PHONY: fuzz soak

fuzz: ## Run each cargo-fuzz target for FUZZ_SECONDS (stable toolchain via RUSTC_BOOTSTRAP); crashes go to fuzz/regressions/
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/regressions/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  ( cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t regressions/$$t \
	      -- -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=regressions/$$t/ ) \
	    || { echo "fuzz target $$t found a crash: input kept in fuzz/regressions/$$t/"; exit 1; }; \
	done

soak: ## Mixed load/unload/create/kill/chgcap on three nodes for SOAK_SECONDS, invariants checked, summary at the end
	$(CARGO) build -p troupe -p troupe-encoders -p troupe-test-faulty -p troupe-tests --bin soak
	SOAK_SECONDS=$(SOAK_SECONDS) target/debug/soak
