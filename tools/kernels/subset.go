package main

import (
	"slices"
	"strings"
)

// matrixTests are the privileged end-to-end tests of cmd/sockscope that every kernel runs: the
// same functions `make test` runs here, with their exact assertions, on the kernels users run.
// They cover each kernel-facing capability without Docker (which stays on the host): trace
// counts and owners for IPv4 and IPv6, the connect errors from the state path and from the
// syscall tracepoints, the filters, sockets against ss, syscall counts, the exporter's counters
// through Prometheus, its socket gauges against ss, record then replay, one incident seen alike
// by trace, export and record, and the feature probes.
var matrixTests = []string{
	"TestVersionListsTheKernelFeatures",
	"TestConnectionsAreOwnedByTheirClientAndServerProcesses",
	"TestConnectToAClosedPortFailsWithECONNREFUSED",
	"TestConnectFailsWithEADDRNOTAVAILWhenPortRangeIsExhausted",
	"TestConnectWithoutARouteFailsWithENETUNREACH",
	"TestFiltersByPortFamilyPidAndState",
	"TestCommKeepsTheSocketsOfThoseProcessesInTheKernel",
	"TestSocketsEqualSsInsideTheNetns",
	"TestSocketsOwnersAreNamed",
	"TestSyscallsCountExactlyWhatAProcessDid",
	"TestSyscallStacksOfAGoProgram",
	"TestExportCountsExactlyWhatANetnsDid",
	"TestExportSocketGaugesFollowTransitionsInEveryNetns",
	"TestExportSyscallsCountExactlyWhatANetnsDid",
	"TestRecordThenReplayGivesTheLiveOutput",
	"TestOneIncidentGivesTheSameConnectOutcomesInTraceExportAndRecord",
	"TestMissingKernelFeaturesAreNamedInOneLine",
}

// belowMinimumTests are what a kernel older than sockscope's minimum runs: version probes it,
// and each command names in one line what it lacks there.
var belowMinimumTests = []string{
	"TestVersionListsTheKernelFeatures",
	"TestMissingKernelFeaturesAreNamedInOneLine",
}

// allTests are the tests of both sets, each once.
func allTests() []string {
	out := slices.Clone(matrixTests)
	for _, t := range belowMinimumTests {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// runPattern is the -test.run pattern that selects exactly tests.
func runPattern(tests []string) string {
	return "^(" + strings.Join(tests, "|") + ")$"
}

// guestBinaries are what the test binary runs (cmd/sockscope's TestMain: sockscope, tcpload
// and its extraBins), built from these packages; with SOCKSCOPE_TEST_BIN_DIR it refuses to start
// when one is missing, so a new one fails the matrix with its name.
var guestBinaries = map[string]string{
	"sockscope": "./cmd/sockscope",
	"tcpload":   "./tools/load/tcpload",
	"sysload":   "./tools/load/sysload",
	"pgload":    "./tools/load/pgload",
}
