# sockscope: make build | make test (as root) | make fuzz | make generate | make bench | make kernels
GO      ?= go
CLANG   ?= clang-14
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build generate check-generate lint test fuzz bench kernels clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/sockscope ./cmd/sockscope

bin/tcpload: $(wildcard tools/load/tcpload/*.go)
	$(GO) build -o bin/tcpload ./tools/load/tcpload

# Rebuild the BPF objects and their Go bindings from bpf/*.c with the pinned clang
# (Debian's clang-14, llvm-14); the outputs in loader/ are committed.
generate:
	$(GO) generate ./...

# Fails when the committed objects or bindings differ from what the C sources produce.
check-generate: generate
	@git diff --exit-code --stat -- loader/ || { echo "loader/: committed BPF objects are stale: run 'make generate' and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain -- loader/)" || { git status --porcelain -- loader/; echo "loader/: generated files not committed"; exit 1; }

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# The tests load real BPF programs, create network namespaces and containers: run as root.
# With CI=true a missing prerequisite (root, BTF, Docker, Prometheus) fails instead of skipping.
# -p 1: one package at a time, because the exporter's churn test counts every container on the
# machine and the Docker-restart test stops the daemon that other packages' tests use.
test:
	$(GO) test -count=1 -p 1 -timeout 40m ./...

# Fuzz the recording reader, and report and diagnose end to end on what it reads (no root needed);
# the seeds: recording/testdata/fuzz, internal/craft (the hostile recordings), diagnose/fuzz_test.go.
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./recording -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)
	$(GO) test ./diagnose -run '^$$' -fuzz FuzzReport -fuzztime $(FUZZTIME)

# The benchmarks (root): a pinned loopback storm with and without `sockscope trace`, the scrape
# time by number of namespaces (BEFORE=path/to/an/older/sockscope adds it to that comparison), and
# `sockscope sockets` against ss and netstat with 30,000 and 80,000 TIME_WAIT sockets, the cost per
# syscall, and memory and time to attach against a floor tracer; naming pods needs the CRI runtime
# of .ci/cri.sh.
bench: build bin/tcpload
	$(GO) run ./tools/bench/trace -sockscope bin/sockscope -tcpload bin/tcpload -out docs/performance-trace.md
	$(GO) run ./tools/bench/export -sockscope bin/sockscope -tcpload bin/tcpload -out docs/performance-export.md
	$(GO) run ./tools/bench/export -sockscope bin/sockscope -phases naming -out docs/performance-naming.md
	$(GO) run ./tools/bench/export -sockscope bin/sockscope -phases netns -out docs/performance-scrape.md $(if $(BEFORE),-sockscope-before $(BEFORE))
	$(GO) run ./tools/bench/sockets -sockscope bin/sockscope -tcpload bin/tcpload -out docs/performance-sockets.md
	$(GO) build -o bin/sysload ./tools/load/sysload
	$(GO) run ./tools/bench/syscalls -sockscope bin/sockscope -sysload bin/sysload -out docs/performance-syscalls.md
	$(GO) run ./tools/bench/memory -sockscope bin/sockscope -out docs/performance-memory.md

# The kernel matrix: the privileged tests of tools/kernels/subset.go natively and on Debian's
# kernels under qemu (packages pinned in tools/kernels/debian.go, cached in ~/.cache/sockscope).
# Needs qemu-system-x86, busybox-static, xz-utils; the report goes to bin/kernels/report.md.
kernels:
	$(GO) run ./tools/kernels

clean:
	rm -rf bin
