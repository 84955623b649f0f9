// Package sockscope holds the build step that turns the kernel programs in bpf/ into the Go
// bindings and objects beside their loaders: loader/trace, loader/sockets, loader/syscalls,
// loader/counters (bpf/export.bpf.c) and loader/stacks, and the feature probes in loader/. The
// outputs are committed, so `go build` needs no clang; `make generate` reruns this with the
// pinned clang, and CI checks the committed files match.
package sockscope

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package trace -output-dir loader/trace -type event -type event_v4 -type event_v6 -type owner_record -type netns_slot -type owned_port trace bpf/trace.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package sockets -output-dir loader/sockets -type sock_record -type owner_record sockets bpf/sockets.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package syscalls -output-dir loader/syscalls -type sc_key -type sc_val -type err_key -type path_key -type comm_key -type comm_val syscalls bpf/syscalls.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package counters -output-dir loader/counters -type netns_counters -type rare_key -type handshake -type listener_entry export bpf/export.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader selftest bpf/selftest.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package stacks -output-dir loader/stacks -type stack_sample stacks bpf/stacks.bpf.c -- -I bpf
