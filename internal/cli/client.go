package cli

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"
)

func newDeployCmd(g *globals) *cobra.Command {
	var (
		name, runtime, handler, role, desc string
		memory, timeout                    int32
		env                                []string
		progress                           string
	)
	cmd := &cobra.Command{
		Use:   "deploy PATH",
		Short: "Create or update a function from a directory or a zip file",
		Long: "Deploy packs PATH (a directory, or an existing .zip) and creates the function,\n" +
			"or, when it exists, updates its code and the settings given as flags (others are\n" +
			"left as they are; --env replaces all environment variables). It returns once the\n" +
			"function is Active (created) or its update is done.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			zipped, err := packPath(args[0])
			if err != nil {
				return err
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(filepath.Clean(args[0])), ".zip")
			}
			vars, err := parseEnv(env)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c := g.client()
			if t := progressFor(progress, cmd.ErrOrStderr(), int64(len(zipped))); t != nil {
				t.label = "uploading " + name
				c = g.clientWith(&http.Client{Transport: t})
			}
			var envCfg *types.Environment
			if vars != nil {
				envCfg = &types.Environment{Variables: vars}
			}
			out, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
				FunctionName: aws.String(name),
				Runtime:      types.Runtime(runtime),
				Handler:      aws.String(handler),
				Role:         aws.String(role),
				Description:  aws.String(desc),
				MemorySize:   aws.Int32(memory),
				Timeout:      aws.Int32(timeout),
				Environment:  envCfg,
				Code:         &types.FunctionCode{ZipFile: zipped},
			})
			var conflict *types.ResourceConflictException
			if errors.As(err, &conflict) {
				// The function exists: change its code, and only the
				// settings given on the command line.
				up, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{
					FunctionName: aws.String(name), ZipFile: zipped,
				})
				if err != nil {
					return err
				}
				if err := waitUpdated(ctx, c, name); err != nil {
					return err
				}
				in := &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(name)}
				flags := cmd.Flags()
				changed := false
				set := func(flag string, apply func()) {
					if flags.Changed(flag) {
						apply()
						changed = true
					}
				}
				set("runtime", func() { in.Runtime = types.Runtime(runtime) })
				set("handler", func() { in.Handler = aws.String(handler) })
				set("role", func() { in.Role = aws.String(role) })
				set("description", func() { in.Description = aws.String(desc) })
				set("memory", func() { in.MemorySize = aws.Int32(memory) })
				set("timeout", func() { in.Timeout = aws.Int32(timeout) })
				set("env", func() { in.Environment = envCfg })
				if changed {
					cfg, err := c.UpdateFunctionConfiguration(ctx, in)
					if err != nil {
						return err
					}
					if err := waitUpdated(ctx, c, name); err != nil {
						return err
					}
					up.FunctionArn, up.Runtime, up.CodeSha256 = cfg.FunctionArn, cfg.Runtime, cfg.CodeSha256
				}
				fmt.Fprintf(cmd.OutOrStdout(), "updated %s (%s, CodeSha256 %s)\n", aws.ToString(up.FunctionArn), up.Runtime, aws.ToString(up.CodeSha256))
				return nil
			}
			if err != nil {
				return err
			}
			if err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)}, deployWait); err != nil {
				return fmt.Errorf("waiting for %s to become Active: %w", name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s (%s, CodeSha256 %s)\n", aws.ToString(out.FunctionArn), out.Runtime, aws.ToString(out.CodeSha256))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "function name (default: the base name of PATH)")
	f.StringVar(&runtime, "runtime", "provided.al2023", "runtime (provided.al2023, python3.x, nodejs20.x, ...)")
	f.StringVar(&handler, "handler", "bootstrap", "handler (module.function for Python, file.export for Node)")
	f.StringVar(&role, "role", "arn:aws:iam::000000000000:role/flint", "execution role ARN (recorded, not enforced)")
	f.StringVar(&desc, "description", "", "description")
	f.Int32Var(&memory, "memory", 128, "memory size in MB (128-10240)")
	f.Int32Var(&timeout, "timeout", 3, "timeout in seconds (1-900)")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVar(&progress, "progress", "auto", "upload progress bar: auto (on a terminal, packages over 4 MiB), always, never")
	return cmd
}

// progressFor returns the transport that draws deploy's upload progress
// on w, or nil when mode says no bar for a package of size bytes.
func progressFor(mode string, w io.Writer, size int64) *progressTransport {
	t := &progressTransport{base: http.DefaultTransport, w: w, min: progressMinBytes}
	switch mode {
	case "always":
		t.min = size // the package's upload, whatever its size; not the small requests
		return t
	case "never":
		return nil
	}
	if size < progressMinBytes || !isTerminal(w) {
		return nil
	}
	return t
}

// deployWait bounds how long deploy waits for a function to become ready.
const deployWait = 5 * time.Minute

// waitUpdated waits until the function's last update has finished.
func waitUpdated(ctx context.Context, c *lambda.Client, name string) error {
	if err := lambda.NewFunctionUpdatedV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)}, deployWait); err != nil {
		return fmt.Errorf("waiting for the update of %s: %w", name, err)
	}
	return nil
}

func parseEnv(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

// packPath returns the zip at path, or a zip of the directory at path with
// file modes and symlinks preserved.
func packPath(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return os.ReadFile(path)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == path {
			return err
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			hdr.Name += "/"
			_, err = zw.CreateHeader(hdr)
			return err
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			w, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			_, err = io.WriteString(w, target)
			return err
		case info.Mode().IsRegular():
			hdr.Method = zip.Deflate
			w, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		}
		return nil // sockets, devices: not part of a package
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func newInvokeCmd(g *globals) *cobra.Command {
	var payload string
	var event, showLog bool
	cmd := &cobra.Command{
		Use:   "invoke NAME",
		Short: "Invoke a function and print its response",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := []byte(payload)
			if payload == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return err
				}
				body = b
			}
			in := &lambda.InvokeInput{FunctionName: aws.String(args[0]), Payload: body}
			if event {
				in.InvocationType = types.InvocationTypeEvent
			}
			if showLog {
				in.LogType = types.LogTypeTail
			}
			out, err := g.client().Invoke(cmd.Context(), in)
			if err != nil {
				return err
			}
			if event {
				fmt.Fprintf(cmd.OutOrStdout(), "accepted (status %d)\n", out.StatusCode)
				return nil
			}
			if out.LogResult != nil {
				tail, err := base64.StdEncoding.DecodeString(*out.LogResult)
				if err == nil {
					cmd.ErrOrStderr().Write(tail)
				}
			}
			cmd.OutOrStdout().Write(out.Payload)
			fmt.Fprintln(cmd.OutOrStdout())
			if out.FunctionError != nil {
				return fmt.Errorf("function error: %s", *out.FunctionError)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&payload, "payload", "", "event JSON ('-' reads standard input)")
	cmd.Flags().BoolVar(&event, "event", false, "invoke asynchronously (InvocationType Event)")
	cmd.Flags().BoolVar(&showLog, "log", false, "print the invocation's log tail to standard error")
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List functions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRUNTIME\tMEMORY\tTIMEOUT\tLAST MODIFIED")
			p := lambda.NewListFunctionsPaginator(g.client(), &lambda.ListFunctionsInput{})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return err
				}
				for _, f := range page.Functions {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", aws.ToString(f.FunctionName), f.Runtime,
						aws.ToInt32(f.MemorySize), aws.ToInt32(f.Timeout), aws.ToString(f.LastModified))
				}
			}
			return tw.Flush()
		},
	}
}

func newDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := g.client().DeleteFunction(cmd.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String(args[0])})
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			}
			return err
		},
	}
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a function's logs (START/END/REPORT included)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if follow {
				q.Set("follow", "true")
			}
			if tail > 0 {
				q.Set("tail", fmt.Sprint(tail))
			}
			u := strings.TrimRight(g.endpoint, "/") + "/flint/v1/functions/" + url.PathEscape(args[0]) + "/logs?" + q.Encode()
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			resp, err := g.httpClient().Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return responseError(resp)
			}
			_, err = io.Copy(cmd.OutOrStdout(), bufio.NewReader(resp.Body))
			if cmd.Context().Err() != nil {
				return nil // interrupted --follow
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new log entries")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N invocations' logs")
	return cmd
}

// responseError describes a failed response of Flint's own endpoints.
func responseError(resp *http.Response) error {
	var e struct{ Message string }
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		if t := resp.Header.Get("X-Amzn-ErrorType"); t != "" {
			return fmt.Errorf("%s: %s: %s", resp.Status, t, e.Message)
		}
		return fmt.Errorf("%s: %s", resp.Status, e.Message)
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
}
