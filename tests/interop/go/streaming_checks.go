//go:build streaming

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gagiteckv1 "github.com/gagiteck/gagiteck-gateway/generated/go/gagiteck/v1"
)

// streamingChecks are the checks of the server-streaming RPCs, built with the tag
// `streaming` (run.sh sets it when generated/go has StreamAgentRun and WatchExecution).
func streamingChecks() []check {
	const login = "auth.signup_login"
	return []check{
		{name: "stream.agent_run_to_end", needs: []string{login}, run: checkStreamAgentRunToEnd},
		{name: "stream.agent_run_cancel", needs: []string{login}, run: checkStreamAgentRunCancel},
		{name: "stream.watch_execution_to_terminal", needs: []string{login}, run: checkWatchExecution},
	}
}

// streamingPassthroughChecks: the header allowlist checks of StreamAgentRun (see
// passthroughChecks).
func streamingPassthroughChecks() []check {
	return []check{{
		name: "passthrough.stream_returned_headers", needs: []string{"auth.signup_login"},
		run: checkStreamReturnedHeaders,
	}}
}

func streamAgent(ctx context.Context, s *suite) (*gagiteckv1.Agent, error) {
	agent, err := s.agents.CreateAgent(ctx, &gagiteckv1.CreateAgentRequest{Agent: &gagiteckv1.Agent{
		Name: "go-interop stream agent " + s.runID, SystemPrompt: "Answer briefly.",
	}}, s.withAuth())
	if err != nil {
		return nil, fmt.Errorf("CreateAgent: %w", err)
	}
	return agent, nil
}

func checkStreamAgentRunToEnd(ctx context.Context, s *suite) error {
	agent, err := streamAgent(ctx, s)
	if err != nil {
		return err
	}
	stream, err := s.agents.StreamAgentRun(ctx, &gagiteckv1.StreamAgentRunRequest{
		AgentId: agent.GetId(), Message: "tell me about streams in Go",
	}, s.withAuth())
	if err != nil {
		return fmt.Errorf("StreamAgentRun: %w", err)
	}
	var events []*gagiteckv1.AgentRunEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("Recv after %d events: %w", len(events), err)
		}
		events = append(events, ev)
	}
	if len(events) < 3 {
		return fmt.Errorf("%d events, want run_started, content deltas and run_completed", len(events))
	}
	started := events[0].GetRunStarted()
	if started == nil || started.GetRunId() == "" || started.GetAgentId() != agent.GetId() {
		return fmt.Errorf("first event %v, want run_started of agent %s with a run id", compact(events[0]), agent.GetId())
	}
	done := events[len(events)-1].GetRunCompleted()
	if done == nil {
		return fmt.Errorf("last event %v, want run_completed", compact(events[len(events)-1]))
	}
	var text strings.Builder
	deltas := 0
	seen := map[string]bool{}
	for i, ev := range events {
		id := ev.GetEventId()
		if id == "" || seen[id] {
			return fmt.Errorf("event %d has an empty or repeated event_id %q", i, id)
		}
		seen[id] = true
		if i > 0 && i < len(events)-1 && (ev.GetRunStarted() != nil || ev.GetRunCompleted() != nil) {
			return fmt.Errorf("event %d is %v: run_started/run_completed only first/last", i, compact(ev))
		}
		if d := ev.GetContentDelta(); d != nil {
			deltas++
			text.WriteString(d.GetDelta())
		}
	}
	if deltas == 0 {
		return fmt.Errorf("no content_delta among %d events", len(events))
	}
	if text.String() != done.GetContent() {
		return fmt.Errorf("the deltas concatenate to %q, run_completed.content is %q", text.String(), done.GetContent())
	}
	if done.GetId() != started.GetRunId() || done.GetAgentId() != agent.GetId() {
		return fmt.Errorf("run_completed %v does not match run_started %v", compact(done), compact(started))
	}
	return nil
}

func checkStreamAgentRunCancel(ctx context.Context, s *suite) error {
	agent, err := streamAgent(ctx, s)
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.agents.StreamAgentRun(callCtx, &gagiteckv1.StreamAgentRunRequest{
		AgentId: agent.GetId(), Message: strings.Repeat("a long question ", 40),
	}, s.withAuth())
	if err != nil {
		return fmt.Errorf("StreamAgentRun: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("first Recv: %w", err)
	}
	if first.GetRunStarted() == nil {
		return fmt.Errorf("first event %v, want run_started", compact(first))
	}
	cancel()
	// Messages already buffered may still arrive; then the call ends CANCELLED.
	for n := 0; ; n++ {
		ev, err := stream.Recv()
		if err == nil {
			if ev.GetRunCompleted() != nil {
				return fmt.Errorf("the run completed after the cancel (%d more events)", n)
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the stream ended OK after the cancel (%d more events), want CANCELLED", n)
		}
		if code := status.Code(err); code != codes.Canceled {
			return fmt.Errorf("after the cancel: %v, want CANCELLED", err)
		}
		return nil
	}
}

func checkWatchExecution(ctx context.Context, s *suite) error {
	wf, err := createTwoStepWorkflow(ctx, s)
	if err != nil {
		return err
	}
	exec, err := triggerGopher(ctx, s, wf)
	if err != nil {
		return err
	}
	stream, err := s.execs.WatchExecution(ctx, &gagiteckv1.WatchExecutionRequest{ExecutionId: exec.GetId()}, s.withAuth())
	if err != nil {
		return fmt.Errorf("WatchExecution: %w", err)
	}
	var states []*gagiteckv1.Execution
	for {
		st, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("Recv after %d states: %w", len(states), err)
		}
		if len(states) > 0 {
			prev := states[len(states)-1]
			if terminal(prev.GetStatus()) {
				return fmt.Errorf("a state %v after the terminal %v", compact(st), prev.GetStatus())
			}
			if proto.Equal(prev, st) {
				return fmt.Errorf("state %d repeats the previous one unchanged: %v", len(states), compact(st))
			}
		}
		if st.GetId() != exec.GetId() {
			return fmt.Errorf("a state of execution %q, want %q", st.GetId(), exec.GetId())
		}
		states = append(states, st)
	}
	if len(states) == 0 {
		return errors.New("the stream ended OK without any state")
	}
	last := states[len(states)-1]
	if !terminal(last.GetStatus()) {
		return fmt.Errorf("the stream ended OK at %v, a non-terminal status", last.GetStatus())
	}
	return checkGopherExecution(last)
}

// checkStreamReturnedHeaders: CreateAgent, then StreamAgentRun, both with x-tenant-id; the
// stream's header metadata carries the x-ratelimit-* of its own upstream answer (remaining
// one below the create's), and the events still run to the end.
func checkStreamReturnedHeaders(ctx context.Context, s *suite) error {
	ctx = withTenant(ctx, s)
	var created metadata.MD
	agent, err := s.agents.CreateAgent(ctx, &gagiteckv1.CreateAgentRequest{Agent: &gagiteckv1.Agent{
		Name: "go-interop passthrough agent " + s.runID,
	}}, s.withAuth(), grpc.Header(&created))
	if err != nil {
		return fmt.Errorf("CreateAgent: %w", err)
	}
	before, err := returnedRemaining(created)
	if err != nil {
		return fmt.Errorf("CreateAgent: %w", err)
	}
	stream, err := s.agents.StreamAgentRun(ctx, &gagiteckv1.StreamAgentRunRequest{
		AgentId: agent.GetId(), Message: "hi",
	}, s.withAuth())
	if err != nil {
		return fmt.Errorf("StreamAgentRun: %w", err)
	}
	header, err := stream.Header()
	if err != nil {
		return fmt.Errorf("StreamAgentRun header: %w", err)
	}
	remaining, err := returnedRemaining(header)
	if err != nil {
		return fmt.Errorf("StreamAgentRun: %w", err)
	}
	if remaining != before-1 {
		return fmt.Errorf("x-ratelimit-remaining %d after CreateAgent's %d, want one less", remaining, before)
	}
	var last *gagiteckv1.AgentRunEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("Recv: %w", err)
		}
		last = ev
	}
	if last.GetRunCompleted() == nil {
		return fmt.Errorf("last event %v, want run_completed", compact(last))
	}
	return nil
}
