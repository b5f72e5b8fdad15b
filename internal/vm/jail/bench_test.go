package jail_test

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/vm/jail"
)

// BenchmarkStart: what the jail adds to starting a program, against its
// peer in the same run (the same program started directly, as an
// unprivileged user): "qemu-system-x86_64 --version" (the VMM's binary and
// its ~50 libraries, each a bind mount in the jail) from Start to its exit. The helper is this
// test binary, or $FLINT_JAIL_HELPER (say, the flint binary, whose package
// initialisers all run in the helper too).
func BenchmarkStart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the jail needs root")
	}
	helper := "/proc/self/exe"
	if h := os.Getenv("FLINT_JAIL_HELPER"); h != "" {
		helper = h
	}
	prog, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		b.Skipf("QEMU is not installed: %v", err)
	}
	for _, jailed := range []bool{false, true} {
		name := "direct"
		if jailed {
			name = "jailed"
		}
		b.Run(name, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				s, _ := programSpec(b, prog, prog, "--version")
				t0 := time.Now()
				cmd := exec.Command(prog, "--version")
				var j *jail.Jail
				if jailed {
					var err error
					if j, err = jail.Prepare(cmd, helper, s); err != nil {
						b.Fatal(err)
					}
				} else {
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 64990, Gid: 64991}}
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				if j != nil {
					j.Started()
					if err := j.Release(); err != nil {
						b.Fatal(err)
					}
				}
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(t0))
				if j != nil {
					j.Close()
				}
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs")
		})
	}
}
