# keywatch: `make demo` runs it end to end on this machine, `make test` runs every test.
# Both fetch what they need (Go modules, the embedded ClickHouse library from npm) into caches
# outside the repository: Go's module and build caches, and $(KEYWATCH_CACHE).

SHELL := /bin/bash
GO    ?= go

# The embedded ClickHouse (libchdb.so) used by tests and the demo; see internal/testbed.
CHDB_VERSION   := 26.7.3-stable.1
CHDB_INTEGRITY := sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw==
KEYWATCH_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/keywatch
LIBCHDB        := $(KEYWATCH_CACHE)/chdb/$(CHDB_VERSION)/libchdb.so
export KEYWATCH_LIBCHDB := $(LIBCHDB)

# helm, built from the Go module proxy, for the chart's tests (helm lint --strict, helm template in
# deploy/). HELM_BIN rather than a KEYWATCH_ name: config.Load rejects unknown KEYWATCH_ variables.
HELM_VERSION := v4.3.2
HELM         := $(KEYWATCH_CACHE)/helm/$(HELM_VERSION)/helm
export HELM_BIN := $(HELM)

# Alertmanager, built from the Go module proxy, for the alertmanager package's tests against the real
# one. v0.32 and later do not build with go install (their UI is not in the module).
ALERTMANAGER_VERSION := v0.31.1
ALERTMANAGER         := $(KEYWATCH_CACHE)/alertmanager/$(ALERTMANAGER_VERSION)/alertmanager
export ALERTMANAGER_BIN := $(ALERTMANAGER)

# Fuzz budgets are execution counts, not durations: Go 1.26's fuzz coordinator can fail a
# duration-bounded run with a spurious "context deadline exceeded" when -fuzztime expires
# (golang/go#75804, fixed in Go 1.27). About 10 s each on 2 cores.
# Headless Chromium for the console's browser test: Debian 12's chromium-headless-shell and the
# libraries it needs, unpacked from Debian's archive (apt-get download) into the cache, not installed.
CHROMIUM := $(KEYWATCH_CACHE)/chromium/debian12/chromium
export CHROMIUM_BIN := $(CHROMIUM)

FUZZ_EXTRACT_EXECS ?= 500000x
FUZZ_DECODE_EXECS  ?= 50000x
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build build-demo demo test vet bench-ingest bench-detect bench-latency chdb helm alertmanager chromium clean

## build: compile bin/keywatch
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/keywatch ./cmd/keywatch

## build-demo: compile bin/keywatch-demo (the demo: keywatch with an embedded ClickHouse and Kafka)
build-demo:
	$(GO) build -o bin/keywatch-demo ./cmd/keywatch-demo

## demo: keywatch on a local ClickHouse and in-process Kafka, four scripted stories in about two minutes (DEMO_FLAGS="--revoke auto" sends the revoke)
demo: chdb build-demo
	./bin/keywatch-demo $(DEMO_FLAGS)

## test: vet, run every test against a real ClickHouse and an in-process Kafka broker (and the Helm
## chart through the real helm, the Alertmanager output through a real Alertmanager, the web console
## in a real headless Chromium), then fuzz the two decoders briefly (their corpora are checked in
## under testdata/fuzz)
test: chdb helm alertmanager chromium vet
	$(GO) test -count=1 -timeout 9m ./...
	$(GO) test -run '^$$' -fuzz FuzzExtract -fuzztime $(FUZZ_EXTRACT_EXECS) ./ingest/mapping/
	$(GO) test -run '^$$' -fuzz FuzzDecodeEvent -fuzztime $(FUZZ_DECODE_EXECS) ./ingest/

vet:
	$(GO) vet ./...

## bench-ingest: keywatch against ClickHouse's own Kafka engine on 2,000,000 events, one run
bench-ingest: chdb build
	$(GO) run ./cmd/bench-ingest --keywatch ./bin/keywatch $(BENCH_FLAGS)

## bench-detect: a full detection cycle over 10,000 keys at 10,000,000 and 100,000,000 stored events
bench-detect: chdb
	$(GO) run ./cmd/bench-detect $(BENCH_FLAGS)

## bench-latency: event-to-Slack latency of leak, lingering and spike injections under 50,000 background events/s
bench-latency: chdb build
	$(GO) run ./cmd/bench-latency --keywatch ./bin/keywatch $(BENCH_FLAGS)

## chdb: fetch libchdb.so into the cache (once)
chdb: $(LIBCHDB)

$(LIBCHDB):
	internal/testbed/fetch-libchdb.sh $(CHDB_VERSION) $(CHDB_INTEGRITY) $(dir $(LIBCHDB))

## helm: build helm $(HELM_VERSION) from the Go module proxy into the cache (once)
helm: $(HELM)

$(HELM):
	GOBIN=$(dir $(HELM)) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

## alertmanager: build Alertmanager $(ALERTMANAGER_VERSION) from the Go module proxy into the cache (once)
alertmanager: $(ALERTMANAGER)

$(ALERTMANAGER):
	GOBIN=$(dir $(ALERTMANAGER)) $(GO) install github.com/prometheus/alertmanager/cmd/alertmanager@$(ALERTMANAGER_VERSION)

## chromium: fetch Debian's headless Chromium into the cache (once)
chromium: $(CHROMIUM)

$(CHROMIUM):
	internal/testbed/fetch-chromium.sh $(dir $(CHROMIUM))

clean:
	rm -rf bin demo-data
