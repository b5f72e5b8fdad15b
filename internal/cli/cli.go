// Package cli implements the flint command line: `flint server` and the
// client commands for the common loop (deploy, invoke, logs, list, delete).
// The client commands speak Lambda's own API through aws-sdk-go-v2, so they
// work against any Flint server (and exercise the same path as the AWS CLI).
package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/spf13/cobra"

	"github.com/flintdev/flint/internal/auth/keystore"
	"github.com/flintdev/flint/internal/auth/sigv4"
)

// DefaultEndpoint is where `flint server` listens by default.
const DefaultEndpoint = "http://127.0.0.1:9000"

// Main runs the flint command line with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "flint:", err)
		return 1
	}
	return 0
}

// globals are the flags every client command shares.
type globals struct {
	endpoint string
	region   string
	profile  string

	credsOnce sync.Once
	creds     aws.CredentialsProvider
	credsErr  error
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "flint",
		Short:         "Flint runs AWS Lambda functions on your own machines",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	endpoint := os.Getenv("FLINT_ENDPOINT")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	root.PersistentFlags().StringVar(&g.endpoint, "endpoint", endpoint, "Flint server URL (env FLINT_ENDPOINT)")
	root.PersistentFlags().StringVar(&g.region, "region", "us-east-1", "region the server answers for")
	root.PersistentFlags().StringVar(&g.profile, "profile", "", "AWS profile to sign requests with (default $AWS_PROFILE; see `flint help keys`)")
	root.AddCommand(
		newServerCmd(),
		newDeployCmd(g),
		newInvokeCmd(g),
		newLogsCmd(g),
		newListCmd(g),
		newDeleteCmd(g),
		newBenchCmd(g),
		newClusterCmd(g),
		newTopCmd(g),
		newKeysCmd(g),
		newMicroVMCmd(),
	)
	return root
}

// client is a Lambda API client for the Flint server at g.endpoint,
// signing with g's credentials.
func (g *globals) client() *lambda.Client { return g.clientWith(nil) }

// clientWith is client with its own HTTP client (nil: the SDK's).
func (g *globals) clientWith(hc aws.HTTPClient) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       g.region,
		BaseEndpoint: aws.String(g.endpoint),
		Credentials:  aws.NewCredentialsCache(aws.CredentialsProviderFunc(g.retrieve)),
		HTTPClient:   hc,
	})
}

// httpClient is a client for Flint's own endpoints that signs like client.
func (g *globals) httpClient() *http.Client {
	return &http.Client{Transport: &sigv4.Transport{
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(g.retrieve)),
		Region:      g.region,
	}}
}

// retrieve finds the credentials to sign with, once, as the AWS CLI does:
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the profile (--profile,
// AWS_PROFILE) of the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
// ~/.aws/credentials). With none configured it takes the root key a
// server on this machine wrote (profile "flint" of DATA/credentials, when
// readable), and failing that a placeholder key, which only a server in
// --auth dev accepts.
func (g *globals) retrieve(ctx context.Context) (aws.Credentials, error) {
	g.credsOnce.Do(func() { g.creds, g.credsErr = g.findCredentials(ctx) })
	if g.credsErr != nil {
		return aws.Credentials{}, g.credsErr
	}
	return g.creds.Retrieve(ctx)
}

func (g *globals) findCredentials(ctx context.Context) (aws.CredentialsProvider, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(g.region),
		// Flint is not on EC2: do not wait for an instance metadata service.
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
	}
	if g.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(g.profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS credentials: %w", err)
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err == nil {
		return cfg.Credentials, nil
	} else if g.profile != "" || os.Getenv("AWS_PROFILE") != "" || os.Getenv("AWS_ACCESS_KEY_ID") != "" {
		return nil, fmt.Errorf("loading AWS credentials: %w", err)
	}
	path := filepath.Join(defaultDataDir(), "credentials")
	if f, err := os.Open(path); err == nil {
		f.Close()
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(g.region),
			config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
			config.WithSharedCredentialsFiles([]string{path}), config.WithSharedConfigFiles([]string{}),
			config.WithSharedConfigProfile(keystore.Profile))
		if err == nil {
			if _, err := cfg.Credentials.Retrieve(ctx); err == nil {
				return cfg.Credentials, nil
			}
		}
	}
	return credentials.NewStaticCredentialsProvider("flint-dev", "flint-dev", ""), nil
}
