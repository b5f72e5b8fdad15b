package logstore

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeBatch feeds arbitrary payloads (a damaged or foreign message)
// to the decoder: it must not panic, and every entry it yields must lie
// within the payload.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(appendFrame(nil, time.Unix(0, 1), "req", []byte("log\n")))
	f.Add(appendFrame(appendFrame(nil, time.Unix(1, 0), "", nil), time.Unix(-5, 0), "a", []byte("b")))
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, payload []byte) {
		total := 0
		_ = decodeBatch(payload, func(e Entry) error {
			total += len(e.RequestID) + len(e.Data)
			return nil
		})
		if total > len(payload) {
			t.Fatalf("entries hold %d bytes from a %d-byte payload", total, len(payload))
		}
	})
}

// FuzzBatchRoundTrip checks that two encoded entries decode to themselves.
func FuzzBatchRoundTrip(f *testing.F) {
	f.Add(int64(1), "req-1", []byte("log"), int64(-2), "", []byte{})
	f.Fuzz(func(t *testing.T, ns1 int64, id1 string, d1 []byte, ns2 int64, id2 string, d2 []byte) {
		want := []Entry{{time.Unix(0, ns1), id1, d1}, {time.Unix(0, ns2), id2, d2}}
		buf := appendFrame(appendFrame(nil, want[0].Time, id1, d1), want[1].Time, id2, d2)
		var got []Entry
		if err := decodeBatch(buf, func(e Entry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("decoded %d entries", len(got))
		}
		for i := range got {
			if !got[i].Time.Equal(want[i].Time) || got[i].RequestID != want[i].RequestID || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("entry %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}
