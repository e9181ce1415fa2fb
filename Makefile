# Troupe — every target only calls cargo or troupe (the demo is a script of troupe commands).
#   make demo   build everything and run the walk-through
#   make test   build and run all tests
CARGO   ?= cargo
TROUPE  := target/release/troupe
PORT    ?= 1900
# The plugin crate `make load` packs (a directory with a Cargo.toml building a cdylib).
PLUGIN  ?= encoders

.PHONY: all build load demo test lint help

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

test: ## Build everything and run every test
	$(CARGO) build --workspace
	$(CARGO) test --workspace

lint: ## rustfmt and clippy, as CI would
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
