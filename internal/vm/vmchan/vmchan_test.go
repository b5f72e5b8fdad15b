package vmchan

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, FrameData, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&b, FrameSync, SyncFrame(42)); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&b, FrameData, make([]byte, MaxFrame+1)); err == nil {
		t.Error("WriteFrame accepted an oversized frame")
	}
	buf := make([]byte, MaxFrame)
	kind, p, err := ReadFrame(&b, buf)
	if err != nil || kind != FrameData || string(p) != "hello" {
		t.Fatalf("first frame: %q %q %v", kind, p, err)
	}
	kind, p, err = ReadFrame(&b, buf)
	if seq, serr := SyncSeq(p); err != nil || kind != FrameSync || serr != nil || seq != 42 {
		t.Fatalf("sync frame: %q %v seq %d %v", kind, err, seq, serr)
	}
	if _, _, err := ReadFrame(&b, buf); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
	for name, in := range map[string][]byte{
		"truncated payload": {FrameData, 0, 0, 0, 9, 'a'},
		"oversized":         {FrameData, 0xff, 0xff, 0xff, 0xff},
		"unknown kind":      {'X', 0, 0, 0, 0},
	} {
		if _, _, err := ReadFrame(bytes.NewReader(in), buf); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v, want an error other than io.EOF", name, err)
		}
	}
}

// FuzzReadFrame: output frames come from the guest, which runs untrusted
// code; no input may panic the host or return more than MaxFrame bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{FrameData, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{FrameSync, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{FrameData, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		buf := make([]byte, MaxFrame)
		for {
			kind, p, err := ReadFrame(r, buf)
			if err != nil {
				return
			}
			if len(p) > MaxFrame || (kind != FrameData && kind != FrameSync) {
				t.Fatalf("frame %q of %d bytes", kind, len(p))
			}
			if kind == FrameSync {
				_, _ = SyncSeq(p)
			}
		}
	})
}

func TestHelloRoundTrip(t *testing.T) {
	h := Hello{UnixNano: 1234567890123}
	copy(h.Seed[:], "seed bytes")
	b := h.Marshal()
	if len(b) != HelloSize {
		t.Fatalf("marshalled %d bytes, want %d", len(b), HelloSize)
	}
	got, err := ParseHello(b)
	if err != nil || got != h {
		t.Fatalf("ParseHello = %+v, %v", got, err)
	}
	b[0] = 'X'
	if _, err := ParseHello(b); err == nil {
		t.Error("ParseHello accepted a bad magic")
	}
	if _, err := ParseHello(b[:10]); err == nil {
		t.Error("ParseHello accepted a short message")
	}
}

func FuzzParseHello(f *testing.F) {
	f.Add(Hello{UnixNano: 1}.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHello(b)
		if err == nil && string(h.Marshal()) != string(b) {
			t.Fatalf("round trip differs")
		}
	})
}

func TestReadHostMessage(t *testing.T) {
	var b bytes.Buffer
	h := Hello{UnixNano: 7}
	b.Write(h.Marshal())
	w := Warm{Argv: []string{"/usr/bin/node", "-e", "0"}, UID: 993, GID: 990}
	wb, err := w.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b.Write(wb)
	b.WriteString("JUNK")
	if m, err := ReadHostMessage(&b); err != nil || m != any(h) {
		t.Fatalf("first message %v %v, want the hello", m, err)
	}
	m, err := ReadHostMessage(&b)
	if got, ok := m.(Warm); err != nil || !ok || len(got.Argv) != 3 || got.UID != 993 {
		t.Fatalf("second message %v %v, want the warm-up", m, err)
	}
	if _, err := ReadHostMessage(&b); err == nil {
		t.Error("junk accepted")
	}
}

func FuzzReadHostMessage(f *testing.F) {
	f.Add(Hello{UnixNano: 1}.Marshal())
	wb, _ := Warm{Argv: []string{"x"}}.Marshal()
	f.Add(wb)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadHostMessage(bytes.NewReader(b))
	})
}
