package selfnest

import (
	"os"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/sockscope/sockscope/internal/churn"
)

func TestSelfNest(t *testing.T) {
	spec, err := ebpf.LoadCollectionSpec("/tmp/selfnest/sn.o")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := strconv.Atoi(os.Getenv("SPIN"))
	spec.Variables["spin"].Set(uint64(s))
	var objs struct {
		Main *ebpf.Program `ebpf:"on_main"`
		St   *ebpf.Map     `ebpf:"st"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: objs.Main})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ns := churn.New(t)
	if err := ns.Connections(2000); err != nil {
		t.Fatal(err)
	}
	st, _ := objs.Main.Stats()
	sum := func(k uint32) uint64 {
		var per []uint64
		objs.St.Lookup(k, &per)
		var x uint64
		for _, v := range per {
			x += v
		}
		return x
	}
	t.Logf("runs %d self-nested %d misses %d", sum(1), sum(2), st.RecursionMisses)
}
