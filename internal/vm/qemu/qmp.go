package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// QMP is a connection to a QEMU's monitor (QEMU Machine Protocol, JSON
// lines on a unix socket given with -qmp unix:PATH,server=on,wait=off).
// Only what Flint needs: commands and their answers; events are skipped.
// One command at a time: Execute is safe for concurrent use (calls are
// serialised).
type QMP struct {
	mu   sync.Mutex // guards conn, r
	conn net.Conn
	r    *bufio.Reader
}

// DialQMP connects to the monitor socket, retrying until QEMU has created
// it or ctx ends, and negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		var err error
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu: QMP %s: %w", path, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qemu: QMP greeting: %v", err)
	}
	if _, err := q.exec("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

func (q *QMP) read(v any) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// Execute runs a command with args (nil for none) and returns its
// "return" value; a QMP error comes back as an error naming the command.
func (q *QMP) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(dl)
		defer q.conn.SetDeadline(time.Time{})
	}
	return q.exec(cmd, args)
}

func (q *QMP) exec(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qemu: QMP %s: %w", cmd, err)
	}
	for {
		var r qmpReply
		if err := q.read(&r); err != nil {
			return nil, fmt.Errorf("qemu: QMP %s: %w", cmd, err)
		}
		switch {
		case r.Event != "":
			continue
		case r.Error != nil:
			return nil, fmt.Errorf("qemu: QMP %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		case r.Return != nil:
			return r.Return, nil
		default:
			return nil, fmt.Errorf("qemu: QMP %s: unexpected reply", cmd)
		}
	}
}

// SaveState sends the guest's state (devices and RAM) to the migration
// URI (QEMU's syntax: "unix:PATH" to a socket the caller listens on and
// copies to a file; "exec:" needs a QEMU allowed to spawn processes),
// waits for it to complete, and resumes the guest when resume is set. The
// guest runs while its RAM is copied; QEMU pauses it for the last pass.
// It is not stopped first on purpose: the state records the run state,
// and a guest saved stopped would be restored stopped. A guest started
// with RestoreArgs on the saved bytes runs on from where this one was
// paused.
func (q *QMP) SaveState(ctx context.Context, uri string, resume bool) error {
	// QEMU throttles migration to 128 MiB/s by default: a local file
	// needs no throttle.
	if _, err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return err
	}
	for {
		raw, err := q.Execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("qemu: query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			if resume {
				_, err := q.Execute(ctx, "cont", nil)
				return err
			}
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("qemu: save state to %s: migration %s: %s", uri, st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu: save state to %s: %w", uri, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// RestoreArgs are the QEMU arguments that start a guest from a state
// written by SaveState, read from QEMU's file descriptor fd (Config's
// ExtraFiles: 3 for the first). Every other argument (machine, memory,
// CPUs, kernel, initrd, devices) must be as when the state was saved;
// QEMU exits with an error when the state does not match or is corrupt.
func RestoreArgs(fd int) []string {
	return []string{"-incoming", "fd:" + strconv.Itoa(fd)}
}

// OptValue escapes s for a value in QEMU's "key=value,..." option syntax
// (-chardev, -drive): a comma is written twice.
func OptValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }
