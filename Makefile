# den: see README.md. `make up` and `make test` are the two commands a new
# user needs; both install what is missing first.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DATA_DIR ?=
LISTEN ?= 127.0.0.1:7070
TEST_TIMEOUT ?= 25m

.PHONY: all build deps up test test-unit bench clean generate e2b-test-deps

all: build

deps:
	@scripts/deps.sh

# npm/pip packages of the e2b SDK suites (test/e2b-js, test/e2b-py), of den's own
# SDKs (sdk/python, sdk/typescript) and of Harbor.
e2b-test-deps:
	@scripts/e2b-test-deps.sh

build: bin/den bin/den-guest bin/runsc

bin/den: FORCE
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/den ./cmd/den

bin/den-guest: FORCE
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o bin/den-guest ./cmd/den-guest

# runsc is built from the gvisor.dev/gvisor version pinned in go.mod, with
# its seccomp programs precompiled as gVisor's own build does
# (scripts/build-runsc.sh); it is rebuilt only when one of these changes (a
# build takes a few minutes).
bin/runsc: go.mod scripts/build-runsc.sh internal/tools/seccompgen/main.go
	@echo "building runsc from the gVisor version pinned in go.mod (first time: a few minutes)"
	GO=$(GO) scripts/build-runsc.sh bin/runsc

up: deps build
	@scripts/up.sh $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --listen $(LISTEN)

# The e2e tests that need the Debian base image share one data dir, so it is
# built once per run (the image package's own test builds it separately).
#
# Two lanes run side by side, one package at a time each; make test fails
# when either fails. The driver lane: the QEMU driver (software emulation
# here, about 17 minutes of one CPU), then the gVisor driver and the image
# package. The other lane: every other package, test/e2e the longest.
TEST_ENV := DEN_REQUIRE_INTEGRATION=1 DEN_TEST_BASE=1 DEN_TEST_IMAGE_BASE=1 DEN_TEST_E2B_SDKS=1 \
	DEN_TEST_BASE_DATA_DIR=$(CURDIR)/.cache/base-data \
	DEN_TEST_KERNEL_DIR=$(CURDIR)/.cache/kernels \
	DEN_RUNSC=$(CURDIR)/bin/runsc DEN_GUEST_BIN=$(CURDIR)/bin/den-guest DEN_BIN=$(CURDIR)/bin/den
DRIVER_LANE := ./internal/driver/qemu ./internal/driver/gvisor ./internal/image
DRIVER_LANE_RE := /internal/(driver/qemu|driver/gvisor|image)$$
test: deps build e2b-test-deps
	@$(TEST_ENV) $(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) $(DRIVER_LANE) & drivers=$$!; \
	$(TEST_ENV) $(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -Ev '$(DRIVER_LANE_RE)'); rest=$$?; \
	wait $$drivers; d=$$?; \
	if [ $$rest -ne 0 ] || [ $$d -ne 0 ]; then echo "make test: FAILED (other packages: exit $$rest, $(DRIVER_LANE): exit $$d)"; exit 1; fi

test-unit:
	$(GO) test -short ./...

bench: deps build
	scripts/bench.sh

generate:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I api/proto --go_out=. --go_opt=module=github.com/denhq/den \
		--connect-go_out=. --connect-go_opt=module=github.com/denhq/den process/process.proto filesystem/filesystem.proto

clean:
	rm -rf bin sdk/python/.venv sdk/typescript/node_modules

FORCE:
