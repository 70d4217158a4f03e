//go:build !streaming

package main

// streamingChecks is the extension point for the server-streaming RPCs of the design,
// AgentService.StreamAgentRun and ExecutionService.WatchExecution. This default build
// refers to neither, so the client compiles against stubs generated from protos that do
// not have them yet. streaming_checks.go (build tag `streaming`) holds their checks;
// run.sh sets the tag when generated/go has the two RPCs.
func streamingChecks() []check {
	return nil
}

// streamingPassthroughChecks: the header allowlist checks of StreamAgentRun
// (streaming_checks.go); none without the streaming RPCs.
func streamingPassthroughChecks() []check {
	return nil
}
