package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	gagiteckv1 "github.com/gagiteck/gagiteck-gateway/generated/go/gagiteck/v1"
)

// unaryChecks are the checks of the unary RPCs, in the order they run.
func unaryChecks() []check {
	const login, created = "auth.signup_login", "agent.create"
	return []check{
		{name: login, run: checkSignUpLogin},
		{name: created, needs: []string{login}, run: checkCreateAgent},
		{name: "agent.get", needs: []string{created}, run: checkGetAgent},
		{name: "agent.list", needs: []string{created}, run: checkListAgents},
		{name: "agent.update_field_mask", needs: []string{created}, run: checkUpdateAgentMask},
		{name: "agent.delete", needs: []string{created}, run: checkDeleteAgent},
		{name: "workflow.trigger_to_terminal", needs: []string{login}, run: checkWorkflowTrigger},
		{name: "error.not_found_error_info", needs: []string{login}, run: checkNotFoundDetails},
		{name: "error.invalid_id_bad_request", needs: []string{login}, run: checkInvalidIDDetails},
		{name: "error.upstream_422_bad_request", needs: []string{login}, run: checkUpstream422Details},
		{name: "deadline.exceeded", needs: []string{login}, run: checkDeadlineExceeded},
		{name: "metadata.request_id_trailer", needs: []string{login}, run: checkRequestIDTrailer},
		{name: "metadata.request_id_on_error", needs: []string{login}, run: checkRequestIDOnError},
	}
}

// ---------------------------------------------------------------------------- auth

func checkSignUpLogin(ctx context.Context, s *suite) error {
	email := fmt.Sprintf("go-interop-%s@example.com", s.runID)
	const password = "Interop-Passw0rd!"
	user, err := s.auth.SignUp(ctx, &gagiteckv1.SignUpRequest{
		Email: email, Password: password, Name: "Go Interop",
	})
	if err != nil {
		return fmt.Errorf("SignUp: %w", err)
	}
	if user.GetId() == "" || user.GetEmail() != email {
		return fmt.Errorf("SignUp answered %v, want an id and email %q", compact(user), email)
	}
	login, err := s.auth.Login(ctx, &gagiteckv1.LoginRequest{Email: email, Password: password})
	if err != nil {
		return fmt.Errorf("Login: %w", err)
	}
	if login.GetAccessToken() == "" {
		return fmt.Errorf("Login answered no access_token: %v", compact(login))
	}
	if t := login.GetTokenType(); t != "" && !strings.EqualFold(t, "bearer") {
		return fmt.Errorf("Login token_type = %q, want bearer", t)
	}
	s.bearer = bearerCreds{token: login.GetAccessToken()}
	me, err := s.auth.GetCurrentUser(ctx, &gagiteckv1.GetCurrentUserRequest{}, s.withAuth())
	if err != nil {
		return fmt.Errorf("GetCurrentUser with the JWT: %w", err)
	}
	if me.GetId() != user.GetId() || me.GetEmail() != email {
		return fmt.Errorf("GetCurrentUser with the JWT answered %v, want user %s", compact(me), user.GetId())
	}
	return nil
}

// ---------------------------------------------------------------------------- agents

func checkCreateAgent(ctx context.Context, s *suite) error {
	meta, _ := structpb.NewStruct(map[string]any{"suite": "go-interop", "run": s.runID})
	want := &gagiteckv1.Agent{
		Name:         "go-interop agent " + s.runID,
		SystemPrompt: "You are the Go interop agent.",
		Config: &gagiteckv1.AgentConfig{
			Model:       proto.String("claude-3-sonnet"),
			MaxTokens:   proto.Int32(1024),
			Temperature: proto.Float64(0.5),
		},
		Tools:    []string{"calculator"},
		Metadata: meta,
	}
	got, err := s.agents.CreateAgent(ctx, &gagiteckv1.CreateAgentRequest{Agent: want}, s.withAuth())
	if err != nil {
		return fmt.Errorf("CreateAgent: %w", err)
	}
	switch {
	case got.GetId() == "":
		return fmt.Errorf("no id in %v", compact(got))
	case got.GetName() != want.GetName() || got.GetSystemPrompt() != want.GetSystemPrompt():
		return fmt.Errorf("name/system_prompt not echoed: %v", compact(got))
	case got.GetConfig().GetModel() != "claude-3-sonnet" || got.GetConfig().GetTemperature() != 0.5:
		return fmt.Errorf("config not echoed: %v", compact(got.GetConfig()))
	case got.GetMetadata().GetFields()["suite"].GetStringValue() != "go-interop":
		return fmt.Errorf("metadata not echoed: %v", compact(got.GetMetadata()))
	case got.GetStatus() != gagiteckv1.AgentStatus_AGENT_STATUS_ACTIVE:
		return fmt.Errorf("status = %v, want the server's default AGENT_STATUS_ACTIVE", got.GetStatus())
	case got.GetCreatedAt() == nil:
		return fmt.Errorf("no created_at in %v", compact(got))
	}
	s.agent = got
	return nil
}

func checkGetAgent(ctx context.Context, s *suite) error {
	got, err := s.agents.GetAgent(ctx, &gagiteckv1.GetAgentRequest{AgentId: s.agent.GetId()}, s.withAuth())
	if err != nil {
		return fmt.Errorf("GetAgent: %w", err)
	}
	if !proto.Equal(got, s.agent) {
		return fmt.Errorf("GetAgent answered %v, want what CreateAgent answered %v", compact(got), compact(s.agent))
	}
	return nil
}

func checkListAgents(ctx context.Context, s *suite) error {
	page, err := s.agents.ListAgents(ctx, &gagiteckv1.ListAgentsRequest{Limit: 100}, s.withAuth())
	if err != nil {
		return fmt.Errorf("ListAgents: %w", err)
	}
	if page.GetLimit() != 100 || page.GetOffset() != 0 || page.GetTotal() < 1 {
		return fmt.Errorf("page limit=%d offset=%d total=%d, want 100, 0, >=1", page.GetLimit(), page.GetOffset(), page.GetTotal())
	}
	for _, a := range page.GetData() {
		if a.GetId() == s.agent.GetId() {
			return nil
		}
	}
	return fmt.Errorf("agent %s not among the %d listed (total %d)", s.agent.GetId(), len(page.GetData()), page.GetTotal())
}

func checkUpdateAgentMask(ctx context.Context, s *suite) error {
	id := s.agent.GetId()
	newName := s.agent.GetName() + " (renamed)"
	// system_prompt and config.model are set too, but outside the mask: they must not
	// reach the PATCH body.
	req := &gagiteckv1.UpdateAgentRequest{
		AgentId: id,
		Agent: &gagiteckv1.Agent{
			Name:         newName,
			SystemPrompt: "MUST NOT BE APPLIED: system_prompt is not in the mask",
			Config:       &gagiteckv1.AgentConfig{Model: proto.String("must-not-be-applied")},
		},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	}
	got, err := s.agents.UpdateAgent(ctx, req, s.withAuth())
	if err != nil {
		return fmt.Errorf("UpdateAgent: %w", err)
	}
	if err := sameExceptName(got, s.agent, newName, "UpdateAgent answered"); err != nil {
		return err
	}
	again, err := s.agents.GetAgent(ctx, &gagiteckv1.GetAgentRequest{AgentId: id}, s.withAuth())
	if err != nil {
		return fmt.Errorf("GetAgent after the update: %w", err)
	}
	if err := sameExceptName(again, s.agent, newName, "GetAgent after the update answered"); err != nil {
		return err
	}
	s.agent = again
	return nil
}

func sameExceptName(got, before *gagiteckv1.Agent, newName, what string) error {
	switch {
	case got.GetName() != newName:
		return fmt.Errorf("%s name %q, want the masked new name %q", what, got.GetName(), newName)
	case got.GetSystemPrompt() != before.GetSystemPrompt():
		return fmt.Errorf("%s system_prompt %q, want it unchanged (%q): an unmasked field was sent",
			what, got.GetSystemPrompt(), before.GetSystemPrompt())
	case got.GetConfig().GetModel() != before.GetConfig().GetModel():
		return fmt.Errorf("%s config.model %q, want it unchanged (%q): an unmasked field was sent",
			what, got.GetConfig().GetModel(), before.GetConfig().GetModel())
	case !proto.Equal(got.GetMetadata(), before.GetMetadata()) || got.GetStatus() != before.GetStatus():
		return fmt.Errorf("%s %v, want metadata and status unchanged", what, compact(got))
	}
	return nil
}

func checkDeleteAgent(ctx context.Context, s *suite) error {
	id := s.agent.GetId()
	if _, err := s.agents.DeleteAgent(ctx, &gagiteckv1.DeleteAgentRequest{AgentId: id}, s.withAuth()); err != nil {
		return fmt.Errorf("DeleteAgent: %w", err)
	}
	_, err := s.agents.GetAgent(ctx, &gagiteckv1.GetAgentRequest{AgentId: id}, s.withAuth())
	if _, err := wantCode(err, codes.NotFound); err != nil {
		return fmt.Errorf("GetAgent after DeleteAgent: %w", err)
	}
	_, err = s.agents.DeleteAgent(ctx, &gagiteckv1.DeleteAgentRequest{AgentId: id}, s.withAuth())
	if _, err := wantCode(err, codes.NotFound); err != nil {
		return fmt.Errorf("a second DeleteAgent: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------- workflows

// createTwoStepWorkflow creates an agent and a workflow of a `transform` step greeting
// {{input.name}} and an `agent` step asked about the transform's output.
func createTwoStepWorkflow(ctx context.Context, s *suite) (*gagiteckv1.Workflow, error) {
	agent, err := s.agents.CreateAgent(ctx, &gagiteckv1.CreateAgentRequest{Agent: &gagiteckv1.Agent{
		Name: "go-interop workflow agent " + s.runID, SystemPrompt: "Summarize the input.",
	}}, s.withAuth())
	if err != nil {
		return nil, fmt.Errorf("CreateAgent for the agent step: %w", err)
	}
	greet, _ := structpb.NewStruct(map[string]any{"template": "Hello {{input.name}}"})
	ask, _ := structpb.NewStruct(map[string]any{
		"agent_id": agent.GetId(), "message": "Summarize: {{step_1.output}}",
	})
	wf, err := s.workflows.CreateWorkflow(ctx, &gagiteckv1.CreateWorkflowRequest{Workflow: &gagiteckv1.Workflow{
		Name:        "go-interop workflow " + s.runID,
		Description: "a transform then an agent",
		Steps: []*gagiteckv1.WorkflowStep{
			{Id: "step_1", Type: "transform", Name: "Greet", Config: greet},
			{Id: "step_2", Type: "agent", Name: "Summarize", Config: ask},
		},
	}}, s.withAuth())
	if err != nil {
		return nil, fmt.Errorf("CreateWorkflow: %w", err)
	}
	if wf.GetId() == "" || len(wf.GetSteps()) != 2 {
		return nil, fmt.Errorf("CreateWorkflow answered %v, want an id and 2 steps", compact(wf))
	}
	return wf, nil
}

// triggerGopher triggers wf with the input {"name": "Gopher"}.
func triggerGopher(ctx context.Context, s *suite, wf *gagiteckv1.Workflow) (*gagiteckv1.Execution, error) {
	input, _ := structpb.NewStruct(map[string]any{"name": "Gopher"})
	exec, err := s.workflows.TriggerWorkflow(ctx, &gagiteckv1.TriggerWorkflowRequest{
		WorkflowId: wf.GetId(), Input: input,
	}, s.withAuth())
	if err != nil {
		return nil, fmt.Errorf("TriggerWorkflow: %w", err)
	}
	if exec.GetId() == "" || exec.GetType() != gagiteckv1.ExecutionType_EXECUTION_TYPE_WORKFLOW ||
		exec.GetResourceId() != wf.GetId() {
		return nil, fmt.Errorf("TriggerWorkflow answered %v, want a workflow execution of %s", compact(exec), wf.GetId())
	}
	return exec, nil
}

// checkGopherExecution checks the end state of an execution made by triggerGopher.
func checkGopherExecution(exec *gagiteckv1.Execution) error {
	if exec.GetStatus() != gagiteckv1.ExecutionStatus_EXECUTION_STATUS_COMPLETED {
		return fmt.Errorf("execution ended %v (error %q), want COMPLETED", exec.GetStatus(), exec.GetError())
	}
	steps := exec.GetStepResults()
	if len(steps) != 2 {
		return fmt.Errorf("execution has %d step results, want 2: %v", len(steps), compact(exec))
	}
	for i, want := range []string{"step_1", "step_2"} {
		if steps[i].GetStepId() != want || steps[i].GetStatus() != gagiteckv1.ExecutionStatus_EXECUTION_STATUS_COMPLETED {
			return fmt.Errorf("step result %d is %v, want %s COMPLETED", i, compact(steps[i]), want)
		}
	}
	if out := compact(steps[0].GetOutput()); !strings.Contains(out, "Hello Gopher") {
		return fmt.Errorf("the transform step's output %s does not contain %q", out, "Hello Gopher")
	}
	// The agent step's message was templated from the transform step's output.
	if out := compact(steps[1].GetOutput()); !strings.Contains(out, "Hello Gopher") {
		return fmt.Errorf("the agent step's output %s does not mention %q, the output of step_1", out, "Hello Gopher")
	}
	if exec.GetCompletedAt() == nil {
		return fmt.Errorf("a COMPLETED execution without completed_at: %v", compact(exec))
	}
	return nil
}

func checkWorkflowTrigger(ctx context.Context, s *suite) error {
	wf, err := createTwoStepWorkflow(ctx, s)
	if err != nil {
		return err
	}
	exec, err := triggerGopher(ctx, s, wf)
	if err != nil {
		return err
	}
	polls := 0
	for !terminal(exec.GetStatus()) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("execution %s still %v after %d polls: %w", exec.GetId(), exec.GetStatus(), polls, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		polls++
		exec, err = s.execs.GetExecution(ctx, &gagiteckv1.GetExecutionRequest{ExecutionId: exec.GetId()}, s.withAuth())
		if err != nil {
			return fmt.Errorf("GetExecution (poll %d): %w", polls, err)
		}
	}
	return checkGopherExecution(exec)
}

func terminal(st gagiteckv1.ExecutionStatus) bool {
	switch st {
	case gagiteckv1.ExecutionStatus_EXECUTION_STATUS_COMPLETED,
		gagiteckv1.ExecutionStatus_EXECUTION_STATUS_FAILED,
		gagiteckv1.ExecutionStatus_EXECUTION_STATUS_CANCELLED:
		return true
	}
	return false
}

// ---------------------------------------------------------------------------- errors

func checkNotFoundDetails(ctx context.Context, s *suite) error {
	_, err := s.agents.GetAgent(ctx, &gagiteckv1.GetAgentRequest{AgentId: "agent_missing" + digits(s.runID)}, s.withAuth())
	st, err := wantCode(err, codes.NotFound)
	if err != nil {
		return err
	}
	info, err := oneErrorInfo(st)
	if err != nil {
		return err
	}
	if info.GetReason() != "NOT_FOUND" {
		return fmt.Errorf("ErrorInfo.reason = %q, want NOT_FOUND", info.GetReason())
	}
	if info.GetDomain() == "" || info.GetMetadata()["http_status"] != "404" {
		return fmt.Errorf("ErrorInfo %v, want a domain and metadata http_status=404", compact(info))
	}
	if ri := requestInfo(st); ri == nil || ri.GetRequestId() == "" {
		return fmt.Errorf("no RequestInfo with a request id in %v", detailNames(st))
	}
	return nil
}

func checkInvalidIDDetails(ctx context.Context, s *suite) error {
	_, err := s.agents.GetAgent(ctx, &gagiteckv1.GetAgentRequest{AgentId: "a/b"}, s.withAuth())
	st, err := wantCode(err, codes.InvalidArgument)
	if err != nil {
		return err
	}
	if _, err := oneErrorInfo(st); err != nil {
		return err
	}
	br := badRequest(st)
	if br == nil {
		return fmt.Errorf("no BadRequest among the details %v", detailNames(st))
	}
	for _, v := range br.GetFieldViolations() {
		if v.GetField() == "agent_id" {
			return nil
		}
	}
	return fmt.Errorf("no field violation on agent_id in %v", compact(br))
}

func checkUpstream422Details(ctx context.Context, s *suite) error {
	_, err := s.agents.ListAgents(ctx, &gagiteckv1.ListAgentsRequest{Limit: 500}, s.withAuth())
	st, err := wantCode(err, codes.InvalidArgument)
	if err != nil {
		return err
	}
	info, err := oneErrorInfo(st)
	if err != nil {
		return err
	}
	if info.GetMetadata()["http_status"] != "422" {
		return fmt.Errorf("ErrorInfo %v, want metadata http_status=422 (the upstream's validation error)", compact(info))
	}
	br := badRequest(st)
	if br == nil || len(br.GetFieldViolations()) == 0 {
		return fmt.Errorf("no BadRequest field violations among the details %v", detailNames(st))
	}
	for _, v := range br.GetFieldViolations() {
		if v.GetField() == "limit" && v.GetDescription() != "" {
			return nil
		}
	}
	return fmt.Errorf("no described field violation on limit in %v", compact(br))
}

// ---------------------------------------------------------------------------- deadlines

func checkDeadlineExceeded(ctx context.Context, s *suite) error {
	short, cancel := context.WithTimeout(ctx, time.Microsecond)
	defer cancel()
	_, err := s.agents.ListAgents(short, &gagiteckv1.ListAgentsRequest{}, s.withAuth())
	if _, err := wantCode(err, codes.DeadlineExceeded); err != nil {
		return fmt.Errorf("ListAgents with a 1µs deadline: %w", err)
	}
	// The connection is still usable afterwards.
	if _, err := s.agents.ListAgents(ctx, &gagiteckv1.ListAgentsRequest{Limit: 1}, s.withAuth()); err != nil {
		return fmt.Errorf("ListAgents after the expired call: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------- metadata

func checkRequestIDTrailer(ctx context.Context, s *suite) error {
	rid := "go-interop-ok-" + s.runID
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", rid)
	var trailer metadata.MD
	if _, err := s.agents.ListAgents(ctx, &gagiteckv1.ListAgentsRequest{Limit: 1}, s.withAuth(), grpc.Trailer(&trailer)); err != nil {
		return fmt.Errorf("ListAgents: %w", err)
	}
	if got := trailer.Get("x-request-id"); len(got) != 1 || got[0] != rid {
		return fmt.Errorf("trailer x-request-id = %q, want [%q]", got, rid)
	}
	return nil
}

func checkRequestIDOnError(ctx context.Context, s *suite) error {
	rid := "go-interop-err-" + s.runID
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", rid)
	var trailer metadata.MD
	_, err := s.agents.GetAgent(ctx, &gagiteckv1.GetAgentRequest{AgentId: "agent_missing" + digits(s.runID)},
		s.withAuth(), grpc.Trailer(&trailer))
	st, err := wantCode(err, codes.NotFound)
	if err != nil {
		return err
	}
	ri := requestInfo(st)
	if ri == nil {
		return fmt.Errorf("no RequestInfo among the details %v", detailNames(st))
	}
	if ri.GetRequestId() != rid {
		return fmt.Errorf("RequestInfo.request_id = %q, want the x-request-id sent, %q", ri.GetRequestId(), rid)
	}
	if got := trailer.Get("x-request-id"); len(got) != 1 || got[0] != rid {
		return fmt.Errorf("trailer x-request-id = %q, want [%q]", got, rid)
	}
	return nil
}

// ---------------------------------------------------------------------------- helpers

// wantCode returns the status of err when it has the wanted code.
func wantCode(err error, want codes.Code) (*status.Status, error) {
	if err == nil {
		return nil, fmt.Errorf("the call succeeded, want %v", want)
	}
	st := status.Convert(err)
	if st.Code() != want {
		return st, fmt.Errorf("code %v (%q), want %v", st.Code(), st.Message(), want)
	}
	return st, nil
}

func oneErrorInfo(st *status.Status) (*errdetails.ErrorInfo, error) {
	var found []*errdetails.ErrorInfo
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			found = append(found, info)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d ErrorInfo details, want exactly one (details: %v)", len(found), detailNames(st))
	}
	return found[0], nil
}

func badRequest(st *status.Status) *errdetails.BadRequest {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br
		}
	}
	return nil
}

func requestInfo(st *status.Status) *errdetails.RequestInfo {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RequestInfo); ok {
			return ri
		}
	}
	return nil
}

// detailNames lists the details' message types (or why one could not be read).
func detailNames(st *status.Status) []string {
	var names []string
	for _, d := range st.Details() {
		switch v := d.(type) {
		case proto.Message:
			names = append(names, string(v.ProtoReflect().Descriptor().FullName()))
		case error:
			names = append(names, "unreadable: "+v.Error())
		default:
			names = append(names, fmt.Sprintf("%T", v))
		}
	}
	return names
}

// compact is a one-line JSON rendering of a message for failure messages.
func compact(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return fmt.Sprintf("<unprintable %T: %v>", m, err)
	}
	return string(b)
}

func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}
