// Command interop is the Go interop client of gagiteck-gateway: it talks to a running
// gateway (with the embedded emulator in open mode) through the generated Go stubs in
// generated/go and runs named checks, each printing `PASS name` or `FAIL name: why`, and
// ends with `N passed, N failed` (exit status 1 when any failed).
//
//	interop [-timeout 20s] [-run REGEXP] HOST:PORT
//
// It speaks plaintext unless GATEWAY_INTEROP_TLS_CA names the CA of the gateway's
// certificate: then TLS, presenting GATEWAY_INTEROP_TLS_CERT and GATEWAY_INTEROP_TLS_KEY
// as its client certificate when set (mTLS), with the checks of tls.go added.
//
// tests/interop/go/run.sh builds and runs it; tests/interop/harness.py starts the gateway.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"time"

	"google.golang.org/grpc"

	gagiteckv1 "github.com/gagiteck/gagiteck-gateway/generated/go/gagiteck/v1"
)

// check is one named assertion about the gateway. needs names checks that must have
// passed first (they set fields of the suite that this one reads).
type check struct {
	name  string
	needs []string
	run   func(ctx context.Context, s *suite) error
}

// suite is what the checks share: the stubs, the caller's credential and the resources
// created along the way.
type suite struct {
	conn      *grpc.ClientConn
	auth      gagiteckv1.AuthServiceClient
	agents    gagiteckv1.AgentServiceClient
	workflows gagiteckv1.WorkflowServiceClient
	execs     gagiteckv1.ExecutionServiceClient

	runID  string            // unique per run: keeps emails, names and request ids apart
	bearer bearerCreds       // set by auth.signup_login
	agent  *gagiteckv1.Agent // created by agent.create
}

// withAuth is the call option that sends the caller's JWT as `authorization: Bearer`.
func (s *suite) withAuth() grpc.CallOption { return grpc.PerRPCCredentials(s.bearer) }

// bearerCreds sends a token as `authorization: Bearer <token>`. The interop gateway is
// on loopback, plaintext in the main run, so it does not insist on transport security.
type bearerCreds struct{ token string }

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }

func main() {
	timeout := flag.Duration("timeout", 20*time.Second, "time limit of each check")
	only := flag.String("run", "", "run only the checks whose name matches this regexp")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] HOST:PORT\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	filter, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad -run: %v\n", err)
		os.Exit(2)
	}

	files := tlsFromEnv()
	creds, err := files.transport(true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad TLS settings: %v\n", err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(flag.Arg(0), grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot create a client for %s: %v\n", flag.Arg(0), err)
		os.Exit(2)
	}
	defer conn.Close()

	s := &suite{
		conn:      conn,
		auth:      gagiteckv1.NewAuthServiceClient(conn),
		agents:    gagiteckv1.NewAgentServiceClient(conn),
		workflows: gagiteckv1.NewWorkflowServiceClient(conn),
		execs:     gagiteckv1.NewExecutionServiceClient(conn),
		runID:     fmt.Sprintf("%d-%d", time.Now().UnixNano(), os.Getpid()),
	}

	all := append(tlsChecks(flag.Arg(0), files), unaryChecks()...)
	all = append(all, streamingChecks()...)
	all = append(all, passthroughChecks()...)
	passed, failed := 0, 0
	ok := map[string]bool{}
	for _, c := range all {
		if !filter.MatchString(c.name) {
			continue
		}
		err := prerequisites(c, ok)
		if err == nil {
			err = runOne(c, s, *timeout)
		}
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", c.name, err)
			continue
		}
		ok[c.name] = true
		passed++
		fmt.Printf("PASS %s\n", c.name)
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

func prerequisites(c check, ok map[string]bool) error {
	for _, need := range c.needs {
		if !ok[need] {
			return fmt.Errorf("not run: it needs %s to pass first", need)
		}
	}
	return nil
}

// runOne runs a check under its own deadline and turns a panic into a failure.
func runOne(c check, s *suite, timeout time.Duration) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.run(ctx, s)
}
