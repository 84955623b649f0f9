// Package sockscope holds the build step that turns the kernel programs in bpf/ into the Go
// bindings and objects in loader/. The outputs are committed, so `go build` needs no clang;
// `make generate` reruns this with the pinned clang, and CI checks the committed files match.
package sockscope

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader -type event -type event_v4 -type event_v6 -type owner_record -type netns_slot -type owned_port trace bpf/trace.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader -type sock_record -type owner_record sockets bpf/sockets.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader -type sc_key -type sc_val -type err_key -type path_key -type comm_key -type comm_val syscalls bpf/syscalls.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader -type netns_counters -type rare_key -type handshake -type listener_requests export bpf/export.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader selftest bpf/selftest.bpf.c -- -I bpf
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -go-package loader -output-dir loader -type stack_sample stacks bpf/stacks.bpf.c -- -I bpf
