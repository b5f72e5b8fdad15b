// Package cli implements the flint command line: `flint server` and the
// client commands for the common loop (deploy, invoke, logs, list, delete).
// The client commands speak Lambda's own API through aws-sdk-go-v2, so they
// work against any Flint server (and exercise the same path as the AWS CLI).
package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/spf13/cobra"
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
	root.AddCommand(
		newServerCmd(),
		newDeployCmd(g),
		newInvokeCmd(g),
		newLogsCmd(g),
		newListCmd(g),
		newDeleteCmd(g),
		newBenchCmd(g),
		newTopCmd(g),
	)
	return root
}

// client is a Lambda API client for the Flint server at g.endpoint.
// Flint accepts request signatures unverified, so any static credentials
// do.
func (g *globals) client() *lambda.Client { return g.clientWith(nil) }

// clientWith is client with its own HTTP client (nil: the SDK's).
func (g *globals) clientWith(hc aws.HTTPClient) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       g.region,
		BaseEndpoint: aws.String(g.endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("flint", "flint", ""),
		HTTPClient:   hc,
	})
}
