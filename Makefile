# quorumlock — build and test entry points. `make test` is what CI runs.
GO ?= go
PKGS := ./...
# The benchmark program is a module of its own: it needs etcd's client and
# server as peers, which the library's go.mod should not carry.
BENCH := examples/lockbench

.PHONY: test servers tidy-check vet fmt-check race lint generate fuzz
.PHONY: fuzz-smoke

test: servers tidy-check vet fmt-check race

# The adapter tests start real redis-server and ZooKeeper processes; this
# installs the Debian packages when they are missing (needs root or sudo).
servers:
	@bash .ci/servers

# go.mod and go.sum are what `go mod tidy` makes of the code: fails with
# the diff otherwise.
tidy-check:
	$(GO) mod tidy -diff
	cd $(BENCH) && $(GO) mod tidy -diff

vet:
	$(GO) vet $(PKGS)
	cd $(BENCH) && $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# QUORUMLOCK_REQUIRE_SERVERS=1: a test that needs a server fails, instead
# of skipping, when the server is missing.
race:
	QUORUMLOCK_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout 20m $(PKGS)
	cd $(BENCH) && QUORUMLOCK_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout 10m ./...

# golangci-lint with depguard (the dependency direction of DESIGN.md),
# forbidigo (no clocks in fsm/, no printing) and errorlint; see .golangci.yml.
GOLANGCI_VERSION := v2.15.0
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
lint:
	@if ! $(GOBIN_DIR)/golangci-lint version 2>/dev/null | grep -q "$(GOLANGCI_VERSION:v%=%)"; then \
		echo "installing golangci-lint $(GOLANGCI_VERSION)"; \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION); \
	fi
	$(GOBIN_DIR)/golangci-lint run ./...
	cd $(BENCH) && $(GOBIN_DIR)/golangci-lint run ./...

# Regenerate fsm/fsmpb and node/nodepb from their .proto files (needs Debian's protobuf-compiler).
generate:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(GO) generate ./fsm/... ./node/...

# Run each decoder fuzzer for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./fsm
	$(GO) test -run='^$$' -fuzz=FuzzRestore -fuzztime=$(FUZZTIME) ./fsm
	$(GO) test -run='^$$' -fuzz='^FuzzReadFrame$$' -fuzztime=$(FUZZTIME) ./transport
	$(GO) test -run='^$$' -fuzz='^FuzzServerConn$$' -fuzztime=$(FUZZTIME) ./transport
	$(GO) test -run='^$$' -fuzz='^FuzzCheckReader$$' -fuzztime=$(FUZZTIME) ./internal/boltcheck
	$(GO) test -run='^$$' -fuzz='^FuzzScanSegment$$' -fuzztime=$(FUZZTIME) ./internal/raftlog
	$(GO) test -run='^$$' -fuzz='^FuzzScanSegment_Damage$$' -fuzztime=$(FUZZTIME) ./internal/raftlog
	$(GO) test -run='^$$' -fuzz='^FuzzScanSegment_CallHeader$$' -fuzztime=$(FUZZTIME) ./internal/raftlog
	$(GO) test -run='^$$' -fuzz='^FuzzEscapeName$$' -fuzztime=$(FUZZTIME) ./adapters/zookeeper
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeData$$' -fuzztime=$(FUZZTIME) ./adapters/zookeeper
	$(GO) test -run='^$$' -fuzz='^FuzzHandleRPC$$' -fuzztime=$(FUZZTIME) ./node
	$(GO) test -run='^$$' -fuzz='^FuzzParams$$' -fuzztime=$(FUZZTIME) ./lockhttp

# CI: every fuzz target (fuzz has one line per target: Go fuzzes one per
# invocation) for a few seconds, which catches shallow crashes only; the
# targets and the long runs are in docs/fuzzing.md. A count, not a
# duration: with a duration, Go 1.26's fuzz coordinator can fail a target
# with a bare "context deadline exceeded" when a loaded machine keeps a
# worker busy at the deadline (go.dev/issue/75804, fixed in Go 1.27);
# 20000 inputs take 1 to 26 s per target on the 2-core machine.
FUZZSMOKE ?= 20000x
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSMOKE)
