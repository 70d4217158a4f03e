package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	gagiteckv1 "github.com/gagiteck/gagiteck-gateway/generated/go/gagiteck/v1"
)

// tlsFiles are the PEM files that put the client on TLS, from the environment:
// GATEWAY_INTEROP_TLS_CA (the CA that signed the gateway's certificate; unset: plaintext)
// and, for mTLS, GATEWAY_INTEROP_TLS_CERT and GATEWAY_INTEROP_TLS_KEY (the client's
// certificate chain and key).
type tlsFiles struct{ ca, cert, key string }

func tlsFromEnv() tlsFiles {
	return tlsFiles{
		ca:   os.Getenv("GATEWAY_INTEROP_TLS_CA"),
		cert: os.Getenv("GATEWAY_INTEROP_TLS_CERT"),
		key:  os.Getenv("GATEWAY_INTEROP_TLS_KEY"),
	}
}

// transport is the connection's security: insecure without a CA, else TLS trusting that
// CA only, presenting the client's key pair when one is named and withClientCert holds.
func (f tlsFiles) transport(withClientCert bool) (credentials.TransportCredentials, error) {
	if (f.cert == "") != (f.key == "") || (f.cert != "" && f.ca == "") {
		return nil, errors.New("GATEWAY_INTEROP_TLS_CERT and _KEY go together, and need GATEWAY_INTEROP_TLS_CA")
	}
	if f.ca == "" {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", f.ca)
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if withClientCert && f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(config), nil
}

// tlsChecks run only on TLS: health over the suite's connection, whose peer must be the
// gateway verified against the CA; with mTLS, a client without a certificate is refused.
func tlsChecks(target string, files tlsFiles) []check {
	if files.ca == "" {
		return nil
	}
	checks := []check{{name: "tls.health_serving_verified_peer", run: checkHealthOverTLS}}
	if files.cert != "" {
		refused := func(ctx context.Context, _ *suite) error {
			return checkRefusedWithoutClientCert(ctx, target, files)
		}
		checks = append(checks, check{name: "tls.refused_without_client_cert", run: refused})
	}
	return checks
}

func checkHealthOverTLS(ctx context.Context, s *suite) error {
	var seen peer.Peer
	reply, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&seen))
	if err != nil {
		return fmt.Errorf("Health.Check: %w", err)
	}
	if reply.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("Health.Check = %v, want SERVING", reply.GetStatus())
	}
	info, ok := seen.AuthInfo.(credentials.TLSInfo)
	switch {
	case !ok:
		return fmt.Errorf("the connection is not TLS: auth info %T", seen.AuthInfo)
	case len(info.State.VerifiedChains) == 0:
		return errors.New("the gateway's certificate was not verified against the CA")
	}
	return nil
}

// checkRefusedWithoutClientCert calls from a second connection that trusts the CA but
// presents no certificate: the gateway's mTLS listener must refuse it (UNAVAILABLE).
func checkRefusedWithoutClientCert(ctx context.Context, target string, files tlsFiles) error {
	creds, err := files.transport(false)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = gagiteckv1.NewAgentServiceClient(conn).ListAgents(ctx, &gagiteckv1.ListAgentsRequest{})
	_, err = wantCode(err, codes.Unavailable)
	return err
}
