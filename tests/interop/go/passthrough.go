package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	gagiteckv1 "github.com/gagiteck/gagiteck-gateway/generated/go/gagiteck/v1"
)

// passthroughChecks are the checks of the header allowlists, present only when the
// harness says how the gateways were started:
//
//   - GATEWAY_INTEROP_PASSTHROUGH set: the gateway under test runs with
//     GATEWAY_FORWARD_METADATA=x-tenant-id and
//     GATEWAY_RETURN_HEADERS=x-ratelimit-limit,x-ratelimit-remaining, two headers the
//     emulator sends on every answer (x-ratelimit-reset, also sent, is not listed);
//   - GATEWAY_INTEROP_ECHO_TARGET=HOST:PORT: a plaintext gateway in front of the
//     harness's echo upstream, with x-tenant-id forwarded and x-tenant-seen returned (the
//     upstream answers x-tenant-seen: <the x-tenant-id it received>).
func passthroughChecks() []check {
	const login = "auth.signup_login"
	var checks []check
	if os.Getenv("GATEWAY_INTEROP_PASSTHROUGH") != "" {
		checks = append(checks, check{
			name: "passthrough.unary_returned_headers", needs: []string{login}, run: checkUnaryReturnedHeaders,
		})
		checks = append(checks, streamingPassthroughChecks()...)
	}
	if echo := os.Getenv("GATEWAY_INTEROP_ECHO_TARGET"); echo != "" {
		checks = append(checks, check{
			name: "passthrough.tenant_id_reaches_upstream",
			run:  func(ctx context.Context, s *suite) error { return checkTenantForwarded(ctx, s, echo) },
		})
	}
	return checks
}

// withTenant adds this run's x-tenant-id to the call's metadata.
func withTenant(ctx context.Context, s *suite) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-tenant-id", "go-interop-"+s.runID)
}

// checkUnaryReturnedHeaders: two ListAgents in a row, each with x-tenant-id; each call's
// header metadata carries the emulator's x-ratelimit-limit and -remaining, and remaining
// drops by one from the first to the second: the values of each call's own answer.
func checkUnaryReturnedHeaders(ctx context.Context, s *suite) error {
	ctx = withTenant(ctx, s)
	var remaining [2]int
	for i := range remaining {
		var header metadata.MD
		_, err := s.agents.ListAgents(ctx, &gagiteckv1.ListAgentsRequest{Limit: 1}, s.withAuth(), grpc.Header(&header))
		if err != nil {
			return fmt.Errorf("ListAgents %d: %w", i+1, err)
		}
		if remaining[i], err = returnedRemaining(header); err != nil {
			return fmt.Errorf("ListAgents %d: %w", i+1, err)
		}
	}
	if remaining[1] != remaining[0]-1 {
		return fmt.Errorf("x-ratelimit-remaining %d then %d, want one less per upstream request", remaining[0], remaining[1])
	}
	return nil
}

// returnedRemaining is the x-ratelimit-remaining of a call's header metadata, once it has
// checked that x-ratelimit-limit and -remaining are there once each as the emulator sends
// them (integers, remaining below the limit) and that x-ratelimit-reset, not listed, is not.
func returnedRemaining(header metadata.MD) (int, error) {
	limit, err := oneInt(header, "x-ratelimit-limit")
	if err != nil {
		return 0, err
	}
	remaining, err := oneInt(header, "x-ratelimit-remaining")
	if err != nil {
		return 0, err
	}
	if remaining < 0 || remaining >= limit {
		return 0, fmt.Errorf("x-ratelimit-remaining %d, want 0 to %d (x-ratelimit-limit)", remaining, limit-1)
	}
	if got := header.Get("x-ratelimit-reset"); len(got) > 0 {
		return 0, fmt.Errorf("x-ratelimit-reset %q is in the header metadata, but not in GATEWAY_RETURN_HEADERS", got)
	}
	return remaining, nil
}

func oneInt(header metadata.MD, name string) (int, error) {
	got := header.Get(name)
	if len(got) != 1 {
		return 0, fmt.Errorf("header metadata %s = %q, want one value (header: %v)", name, got, header)
	}
	n, err := strconv.Atoi(got[0])
	if err != nil {
		return 0, fmt.Errorf("header metadata %s = %q, want an integer", name, got[0])
	}
	return n, nil
}

// checkTenantForwarded: ListAgents through the echo gateway with x-tenant-id and a
// metadata entry that is not listed; the upstream's x-tenant-seen comes back with the
// tenant sent. The harness then reads from the upstream's side what reached it.
func checkTenantForwarded(ctx context.Context, s *suite, target string) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("a client for the echo gateway %s: %w", target, err)
	}
	defer conn.Close()
	tenant := "go-interop-" + s.runID
	ctx = metadata.AppendToOutgoingContext(ctx, "x-tenant-id", tenant, "x-interop-unlisted", "1")
	var header metadata.MD
	_, err = gagiteckv1.NewAgentServiceClient(conn).ListAgents(ctx, &gagiteckv1.ListAgentsRequest{Limit: 1}, grpc.Header(&header))
	if err != nil {
		return fmt.Errorf("ListAgents through the echo gateway: %w", err)
	}
	if got := header.Get("x-tenant-seen"); len(got) != 1 || got[0] != tenant {
		return fmt.Errorf("the upstream saw x-tenant-id %q (x-tenant-seen), want [%q]", got, tenant)
	}
	return nil
}
