package e2e

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

type rawEntry struct {
	name    string
	mode    fs.FileMode
	body    []byte
	stored  bool
	claimed uint64 // UncompressedSize64 to claim (a lying header); 0: the truth
}

// rawZip builds a zip with full control over names, modes and headers.
func rawZip(t *testing.T, entries ...rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.stored {
			h.Method = zip.Store
		}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		var w interface{ Write([]byte) (int, error) }
		var err error
		if e.claimed > 0 {
			h.UncompressedSize64 = e.claimed
			h.CompressedSize64 = uint64(len(e.body))
			h.CRC32 = 0
			w, err = zw.CreateRaw(h)
		} else {
			w, err = zw.CreateHeader(h)
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBadInputThroughServer sends bad packages and payloads to a real server:
// each gets Lambda's error type and HTTP status, nothing is written outside
// the code cache, and the server keeps serving.
func TestBadInputThroughServer(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	c := s.lambda()
	bootstrap := rawEntry{name: "bootstrap", mode: 0o755, body: []byte("#!/bin/sh\n")}

	zeros := bytes.Repeat([]byte{0}, 300<<20) // 300 MB of zeros deflate to ~300 KB
	var bomb bytes.Buffer
	{
		zw := zip.NewWriter(&bomb)
		w, _ := zw.Create("zeros")
		w.Write(zeros)
		zw.Close()
	}
	zeros = nil

	cases := []struct {
		name   string
		zip    []byte
		typ    string
		status int
	}{
		{"not a zip", []byte("this is not a zip file"), "InvalidParameterValueException", 400},
		{"zip-slip", rawZip(t, bootstrap, rawEntry{name: "../../escaped", body: []byte("x")}), "InvalidParameterValueException", 400},
		{"absolute path", rawZip(t, bootstrap, rawEntry{name: "/etc/escaped", body: []byte("x")}), "InvalidParameterValueException", 400},
		{"escaping symlink", rawZip(t, bootstrap, rawEntry{name: "link", mode: fs.ModeSymlink | 0o777, body: []byte("../../../../etc")}), "InvalidParameterValueException", 400},
		{"absolute symlink", rawZip(t, bootstrap, rawEntry{name: "link", mode: fs.ModeSymlink | 0o777, body: []byte("/etc/shadow")}), "InvalidParameterValueException", 400},
		{"file through symlink", rawZip(t, rawEntry{name: "d", mode: fs.ModeSymlink | 0o777, body: []byte(".")}, rawEntry{name: "d/bootstrap", body: []byte("x")}), "InvalidParameterValueException", 400},
		{"deflate bomb over 250 MB", bomb.Bytes(), "InvalidParameterValueException", 400},
		{"lying header", rawZip(t, rawEntry{name: "big", stored: true, body: bytes.Repeat([]byte("a"), 4096), claimed: 10}), "InvalidParameterValueException", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
				FunctionName: aws.String("bad"),
				Runtime:      types.RuntimeProvidedal2023,
				Handler:      aws.String("bootstrap"),
				Role:         aws.String("arn:aws:iam::000000000000:role/x"),
				Code:         &types.FunctionCode{ZipFile: tc.zip},
			})
			checkAPIError(t, err, tc.typ, tc.status)
		})
	}
	// Nothing escaped: no "escaped" file anywhere under the data dir's
	// parent, and no function was created.
	filepath.WalkDir(filepath.Dir(data), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "escaped" {
			t.Errorf("zip entry escaped to %s", p)
		}
		return nil
	})
	if _, err := c.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("bad")}); err == nil {
		t.Error("a function was created from a bad zip")
	}

	createGoFn(t, c, "good", nil)
	big := append([]byte(`{"x":"`), append(bytes.Repeat([]byte("a"), 6<<20), '"', '}')...)
	_, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("good"), Payload: big})
	checkAPIError(t, err, "RequestEntityTooLargeException", 413)

	resp, err := http.Post(s.url()+"/2015-03-31/functions/good/invocations", "application/json", strings.NewReader(`{"unterminated`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != "InvalidRequestContentException" {
		t.Errorf("malformed JSON payload: %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}

	// The server still serves.
	asReply(t, invoke(t, c, "good", map[string]any{"name": "still-alive"}, false))
	if _, err := os.Stat(filepath.Join(data, "code")); err != nil {
		t.Errorf("code cache: %v", err)
	}
}

func checkAPIError(t *testing.T, err error, typ string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want %s", err, typ)
	}
	if ae.ErrorCode() != typ {
		t.Errorf("error code %s (%s), want %s", ae.ErrorCode(), ae.ErrorMessage(), typ)
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() != status {
		t.Errorf("HTTP status %d, want %d", re.HTTPStatusCode(), status)
	}
}
