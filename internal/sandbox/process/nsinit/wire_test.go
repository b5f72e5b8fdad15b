package nsinit

import (
	"reflect"
	"syscall"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	cfg := &Config{
		ID: "sb-1", Root: "/state/rootfs", Hostname: "localhost",
		Host:     []HostPath{{Path: "/usr"}, {Path: "/bin", Link: "usr/bin"}},
		EtcFiles: map[string]string{"passwd": "root:x:0:0::/:/sbin/nologin\n", "hosts": ""},
		EtcBinds: []string{"/etc/ssl/certs"}, DevNodes: []string{"null", "zero"},
		UID: 993, GID: 990, NoFile: 1024, ListenPort: 9001,
		Seccomp: []syscall.SockFilter{{Code: 0x20, Jt: 1, Jf: 2, K: 4}, {Code: 6, K: 0x7fff0000}},
		Net:     &Net{Iface: "eth0", Addr: [4]byte{100, 96, 0, 2}, PrefixLen: 30, Gateway: [4]byte{100, 96, 0, 1}},
	}
	claim := &Claim{Mounts: []string{"/var/task", "/var/runtime"}, TmpMB: 512, Command: []string{"/var/runtime/bootstrap"}, Env: []string{"A=b", "C="}}
	ready := &Ready{Error: "boom", Step: "rootfs", Timings: []Timing{{Step: "proc", Nanos: 12345}, {Step: "dev", Nanos: 1}}}
	for _, tc := range []struct {
		in  interface{ MarshalBinary() ([]byte, error) }
		out interface{ UnmarshalBinary([]byte) error }
	}{
		{cfg, &Config{}}, {&Config{ID: "x"}, &Config{}},
		{claim, &Claim{}}, {ready, &Ready{}}, {&Ready{}, &Ready{}},
	} {
		b, err := tc.in.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.out.UnmarshalBinary(b); err != nil {
			t.Fatalf("%T: %v", tc.in, err)
		}
		if !reflect.DeepEqual(tc.in, tc.out) {
			t.Errorf("round trip of %T:\n got %+v\nwant %+v", tc.in, tc.out, tc.in)
		}
		// Every truncation is an error, never a panic or a partial value
		// taken for whole.
		for i := range len(b) {
			if err := tc.out.UnmarshalBinary(b[:i]); err == nil {
				t.Errorf("%T truncated to %d of %d bytes decoded without error", tc.in, i, len(b))
			}
		}
		if err := tc.out.UnmarshalBinary(append(b, 0)); err == nil {
			t.Errorf("%T with a trailing byte decoded without error", tc.in)
		}
	}
	// A message of another kind is refused.
	b, _ := claim.MarshalBinary()
	if err := (&Config{}).UnmarshalBinary(b); err == nil {
		t.Error("a Claim decoded as a Config")
	}
}

func FuzzWire(f *testing.F) {
	for _, m := range []interface{ MarshalBinary() ([]byte, error) }{
		&Config{ID: "a", Host: []HostPath{{Path: "/usr"}}, EtcFiles: map[string]string{"a": "b"}, Seccomp: []syscall.SockFilter{{Code: 6}}, Net: &Net{Iface: "eth0", PrefixLen: 30}},
		&Claim{Mounts: []string{"/var/task"}, Command: []string{"x"}, Env: []string{"A=b"}},
		&Ready{Step: "s", Timings: []Timing{{Step: "t", Nanos: 5}}},
	} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []interface {
			UnmarshalBinary([]byte) error
			MarshalBinary() ([]byte, error)
		}{&Config{}, &Claim{}, &Ready{}} {
			if v.UnmarshalBinary(b) != nil {
				continue
			}
			// Whatever decodes re-encodes to a message that decodes the same.
			again, _ := v.MarshalBinary()
			w := reflect.New(reflect.TypeOf(v).Elem()).Interface().(interface{ UnmarshalBinary([]byte) error })
			if err := w.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(v, w) {
				t.Fatalf("%T: re-encoded message decodes to %+v, %v; want %+v", v, w, err, v)
			}
		}
	})
}
