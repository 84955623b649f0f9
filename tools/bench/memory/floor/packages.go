//go:build designpkgs

package main

// The packages the design names, besides cilium/ebpf: the Docker Engine API client, the CRI API
// over gRPC (names on Kubernetes nodes), and the Prometheus client; linked for their weight only,
// what their initialization maps and allocates. (pflag weighs next to nothing.)
import (
	_ "github.com/moby/moby/client"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/pflag"
	_ "google.golang.org/grpc"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
)
