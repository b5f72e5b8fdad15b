package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/auth/keystore"
)

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage access keys (needs the server's root key)",
		Long: `keys creates, lists and deletes the access keys a server with --auth required
verifies. Each key belongs to one 12-digit account, and a caller sees only its
account's functions. These commands need the root key, which flint server wrote
to DATA/credentials (profile "flint") on its first start:

  export AWS_SHARED_CREDENTIALS_FILE=/var/lib/flint/credentials AWS_PROFILE=flint

Like every client command, keys signs with the standard AWS environment
variables or shared credentials file.`,
	}
	var account string
	create := &cobra.Command{
		Use:   "create --account ID",
		Short: "Create an access key of an account; prints its secret, the only time it is shown",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, _ := json.Marshal(keystore.CreateRequest{Account: account})
			var k auth.Key
			if err := g.keysCall(cmd, http.MethodPost, "", body, &k); err != nil {
				return err
			}
			out, _ := json.MarshalIndent(struct {
				AccessKeyID     string `json:"AccessKeyId"`
				SecretAccessKey string `json:"SecretAccessKey"`
				Account         string `json:"Account"`
			}{k.AccessKeyID, k.SecretAccessKey, k.Account}, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return nil
		},
	}
	create.Flags().StringVar(&account, "account", "", "the 12-digit account the key acts for (required)")
	_ = create.MarkFlagRequired("account")
	list := &cobra.Command{
		Use:   "list",
		Short: "List access keys (without secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var l keystore.ListResponse
			if err := g.keysCall(cmd, http.MethodGet, "", nil, &l); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCESS KEY ID\tACCOUNT\tROOT\tCREATED")
			for _, k := range l.Keys {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", k.AccessKeyID, k.Account, k.Root, k.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete an access key: requests signed with it are refused from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.keysCall(cmd, http.MethodDelete, "/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

// keysCall calls the key-management endpoint and decodes its answer into
// out (when not nil).
func (g *globals) keysCall(cmd *cobra.Command, method, suffix string, body []byte, out any) error {
	u := strings.TrimRight(g.endpoint, "/") + keystore.KeysPath + suffix
	req, err := http.NewRequestWithContext(cmd.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
