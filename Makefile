# imgpipe: `make setup` once, then `make demo` or `make test`. CI runs `make test` (see .ci/run).
SHELL := bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= imgpipe-local
ENDPOINT ?= http://127.0.0.1:4566

export AWS_ACCESS_KEY_ID ?= test
export AWS_SECRET_ACCESS_KEY ?= test
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= us-east-1
export AWS_ENDPOINT_URL ?= $(ENDPOINT)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# Build cache (docs/development.md, "Build cache and test tiers"). With CI=true (a fresh clone),
# cargo builds into $(IMGPIPE_CACHE)/target, outside the clone, and tools/build_cache.py gives
# unchanged files their cached mtimes: the next clone rebuilds only what changed. Bounded by
# IMGPIPE_CACHE_MAX_GB (default 20; over it the cache is emptied first). `make clean-cache` empties
# it. Every target here that runs cargo prepares the cache first: a build into it that skipped
# `prepare` could later pass for another commit's. One run at a time. Elsewhere cargo uses
# ./target as usual (a CARGO_TARGET_DIR you set yourself is used, never touched by the script).
IMGPIPE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/imgpipe
export IMGPIPE_CACHE
ifeq ($(CI),true)
export CARGO_TARGET_DIR ?= $(IMGPIPE_CACHE)/target
export IMGPIPE_BUILD_CACHE := 1
endif
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Lint tools (cargo-deny, checkov), installed once per machine, not per clone.
TOOLS := $(IMGPIPE_CACHE)/tools
CARGO_DENY_VERSION := 0.20.2
CHECKOV_VERSION := 3.3.30

.PHONY: help setup build check test unit fast-checks build-cache integration lint fmt fmt-check clippy up down deploy worker demo lambda bench bench-rd bench-stages bench-api bench-events bench-fanout bench-render bench-lambda gpu-check soak fuzz clean clean-cache

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: .tools/system.stamp $(VENV)/.stamp ## install what the build, LocalStack and the browser test need (cmake, nasm, chromium, venv)

.tools/system.stamp:
	@if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null || ! command -v curl >/dev/null \
	    || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing cmake, nasm, curl (libjpeg-turbo builds from source), chromium + chromedriver (gallery browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq cmake nasm curl chromium chromium-driver >/dev/null; \
	fi
	@mkdir -p .tools && touch $@

$(VENV)/.stamp: localstack/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r localstack/requirements.txt
	@touch $@

build: setup build-cache ## build all binaries (debug)
	cargo build --workspace

# Test tiers: `make check` is the inner loop (no LocalStack); `make test` is everything CI runs.
check: setup fmt-check clippy unit ## the inner loop: fmt, clippy, the unit + corpus tests and the fast checks (no LocalStack)

test: fast-checks lint unit ## everything CI runs: make lint, the unit + corpus tests and fast checks, then integration, browser and small soak on a LocalStack started and stopped here
	./localstack/with.sh bash -c 'cargo test --workspace --test integration -- --test-threads 4 && $(PY) tests/browser/test_gallery.py \
	  && $(PY) tests/soak/soak.py $(SOAK_SMALL)'

unit: setup fast-checks build-cache ## unit + corpus tests and the fast checks (no LocalStack)
	# One build for every target, then tests with the same package selection (--workspace), so
	# cargo resolves one feature set and builds each crate once (a `-p` subset resolves fewer
	# features and rebuilds `image`, `imgpipe-core` and all above them: ~13 min of CI). The
	# LocalStack suite (`imgpipe-it`'s `integration`, `test = false`) runs only in `make test`.
	cargo build --workspace --all-targets
	cargo test --workspace

# Seconds each, no build: links in README.md and docs/, the build cache's script and the sources it
# relies on, the CloudFront Function's and the gallery decoder's node tests, cfn-lint, template tests.
fast-checks: setup
	python3 tests/docs/check_links.py
	python3 -m unittest discover -s tests/docs -p 'test_*.py'
	python3 -m unittest discover -s tools -p 'test_*.py'
	python3 tools/build_cache.py check-sources
	node --test infra/cloudfront/negotiate.test.mjs functions/delivery/assets/thumbhash.test.mjs
	$(VENV)/bin/cfn-lint infra/template.yaml infra/gpu-worker.yaml
	$(PY) -m unittest discover -s infra -p 'test_*.py'

build-cache: ## prepare the build cache (only when CARGO_TARGET_DIR is outside the clone: CI=true)
	python3 tools/build_cache.py prepare

clean-cache: ## empty the build cache ($(IMGPIPE_CACHE)/target; the lint tools beside it stay)
	python3 tools/build_cache.py clean

# The small soak `make test` runs: 300 uploads, 3 SIGKILLs, one 20 s LocalStack stall (longer than the S3 calls' read timeout and its retries), debug build.
SOAK_SMALL := --uploads 300 --workers 3 --kills 3 --kill-every 8 --stall 20 --stall-at 0.3 --profile debug --timeout 900
SOAK ?=
SOAK_PROFILE ?= release

soak: setup build-cache ## 10 000 uploads on LocalStack while workers are SIGKILLed and LocalStack stalls (SOAK='--uploads N …', SOAK_PROFILE=debug); report in target/soak/
	cargo build $(if $(filter release,$(SOAK_PROFILE)),--release,) -p imgpipe-derive
	LOCALSTACK_MODE=host ./localstack/with.sh $(PY) tests/soak/soak.py --profile $(SOAK_PROFILE) $(SOAK)

fuzz: setup ## cargo-fuzz (nightly) on the parsers and the core pipeline, seeded from the fixtures; executions per target in target/fuzz/summary.tsv
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	fuzz/run.sh

lint: setup fmt-check clippy $(TOOLS)/checkov-$(CHECKOV_VERSION)/bin/checkov $(TOOLS)/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny ## rustfmt check, clippy -D warnings, cfn-lint, checkov, cargo deny (licences, bans)
	$(VENV)/bin/cfn-lint infra/template.yaml infra/gpu-worker.yaml
	# --skip-download: no call to the vendor's API (guidelines, severities); the checks are local.
	$(TOOLS)/checkov-$(CHECKOV_VERSION)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  -f infra/template.yaml -f infra/gpu-worker.yaml
	# cargo-deny reads every crate in Cargo.lock, those of other platforms too: fetch them first.
	cargo fetch --locked
	$(TOOLS)/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny --offline check --hide-inclusion-graph licenses bans

fmt-check:
	cargo fmt --all -- --check

clippy: build-cache
	cargo clippy --workspace --all-targets -- -D warnings

# checkov in its own venv: its pins (boto3 among them) would fight LocalStack's.
$(TOOLS)/checkov-$(CHECKOV_VERSION)/bin/checkov:
	python3 -m venv $(TOOLS)/checkov-$(CHECKOV_VERSION)
	$(TOOLS)/checkov-$(CHECKOV_VERSION)/bin/pip install -q checkov==$(CHECKOV_VERSION)

$(TOOLS)/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny:
	env -u CARGO_TARGET_DIR cargo install --locked --root $(TOOLS)/cargo-deny-$(CARGO_DENY_VERSION) cargo-deny@$(CARGO_DENY_VERSION)

fmt: ## format the code
	cargo fmt --all

up: setup ## start LocalStack (docker compose if a daemon answers, else on the host)
	./localstack/start.sh

down: ## stop LocalStack
	./localstack/stop.sh

deploy: up ## deploy infra/template.yaml to LocalStack (LocalMode) as $(STACK); prints the outputs
	$(PY) localstack/deploy.py $(STACK) LocalMode=true | tee .localstack/$(STACK).json

worker: deploy build-cache ## run the derive handler as a long-polling worker on the deployed queue
	cargo build -p imgpipe-derive -p imgpipe-gpu-worker
	eval "$$($(PY) -c 'import json, shlex; o = json.load(open(".localstack/$(STACK).json")); \
	  print(" ".join(f"export {k}={shlex.quote(o[v])};" for k, v in [("IMGPIPE_INGEST_BUCKET", "IngestBucketName"), ("IMGPIPE_OUTPUT_BUCKET", "DerivativesBucketName"), \
	  ("IMGPIPE_DLQ_URL", "DlqUrl"), ("IMGPIPE_QUEUE_URL", "JobsQueueUrl")]))')" && $(TARGET_DIR)/debug/derive

demo: setup build-cache ## LocalStack + template + worker, API, webhook sender; uploads, webhooks, the edge gateway, and the gallery page
	cargo build -p imgpipe-derive -p imgpipe-gpu-worker -p imgpipe-api -p imgpipe-webhooks -p imgpipe-cli
	./localstack/start.sh
	$(PY) localstack/demo.py $(STACK)
	@echo "gallery: file://$(abspath $(TARGET_DIR))/gallery/index.html"
	@echo "LocalStack and the edge gateway (http://127.0.0.1:8790/) are still running (make down stops them)."

bench: setup build-cache ## imgpipe vs sharp side by side (installs sharp in bench/node_modules): speed table + target/bench/results.json, then bench-rd
	python3 bench/run.py
	python3 bench/rd.py

bench-rd: setup build-cache ## rate–distortion: SSIMULACRA2 vs bytes of imgpipe's and sharp's encoders on the same pixels, BD-rates, quality targets; target/bench/rd.{json,svg}
	python3 bench/rd.py

bench-stages: setup build-cache ## criterion micro-benchmarks of each pipeline stage (target/criterion)
	cargo bench -p imgpipe-core --bench stages

bench-api: setup build-cache ## criterion: latency of POST /v1/uploads in process (POST policy and PUT pre-signing)
	cargo bench -p imgpipe-api --bench uploads

bench-events: setup build-cache ## on LocalStack: events and webhooks for N uploads (delivery latency, counts, duplicates)
	cargo build --release -q -p imgpipe-derive -p imgpipe-webhooks
	./localstack/with.sh $(PY) bench/events.py

bench-fanout: setup build-cache ## on LocalStack: a 50 000-item manifest fanned out (seconds, HEAD and SQS calls, invocations); BENCH_FANOUT_BIN for another binary
	cargo build -q -p imgpipe-derive
	./localstack/with.sh $(PY) bench/fanout.py

bench-render: setup build-cache ## on LocalStack: first-request latency of variants made on request (640 px WebP, 1200 px AVIF) from a 12 MP JPEG, the second request, cost per 1 M
	cargo build --release -q -p imgpipe-derive -p imgpipe-cli
	./localstack/with.sh $(PY) bench/render.py

bench-lambda: setup build-cache ## derive/api binary size, cold start under a Runtime API stub, cost per 1 M images (after make bench)
	python3 bench/lambda.py

gpu-check: setup build-cache ## on a GPU machine: CUDA kernels vs the CPU reference, then images/s GPU vs all CPU cores
	IMGPIPE_GPU_TESTS=1 cargo test --release -p imgpipe-gpu -- --nocapture
	cargo build --release -q -p imgpipe-bench
	python3 bench/gpu.py

lambda: setup build-cache ## build the arm64 Lambda bootstrap zip with cargo-lambda (target/lambda/derive/bootstrap.zip)
	$(PY) -m pip install -q cargo-lambda
	cargo lambda build --release --arm64 -p imgpipe-derive --output-format zip

clean: down ## remove build output and local state
	rm -rf target .localstack .tools
