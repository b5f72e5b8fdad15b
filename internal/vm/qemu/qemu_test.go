package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	c := Config{Kernel: "/k/vmlinux", Initrd: "/k/initrd", Cmdline: []string{"quiet"}}
	args := c.Args(2596120)
	appendArg := args[slices.Index(args, "-append")+1]
	for _, want := range []string{"console=ttyS0", "tsc_early_khz=2596120", "tsc=reliable", "no_timer_check", "reboot=t", "panic=-1"} {
		if !slices.Contains(strings.Fields(appendArg), want) {
			t.Errorf("kernel command line %q lacks %s", appendArg, want)
		}
	}
	if !strings.HasSuffix(appendArg, " quiet") {
		t.Errorf("Cmdline not appended last: %q", appendArg)
	}
	// rtc=off costs ~3 s of boot under TCG; -cpu host aborts where KVM is PVM.
	joined := strings.Join(args, " ")
	for _, bad := range []string{"rtc=off", "-cpu host", "kvm"} {
		if strings.Contains(joined, bad) {
			t.Errorf("TCG args contain %q: %s", bad, joined)
		}
	}
	for _, want := range []string{"-M microvm", "-m 256", "-smp 1", "-no-reboot", "-accel tcg", "-initrd /k/initrd", "-kernel /k/vmlinux"} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q: %s", want, joined)
		}
	}
	c.Accel = KVM
	if j := strings.Join(c.Args(0), " "); !strings.Contains(j, "-accel kvm -cpu host") || strings.Contains(j, "tsc_early_khz") {
		t.Errorf("KVM args, no TSC: %s", j)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{}, {Kernel: "k", MemoryMiB: -1}, {Kernel: "k", Accel: "hvf"}} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
}

func TestHostTSCkHz(t *testing.T) {
	khz, err := HostTSCkHz()
	if err != nil {
		t.Skipf("this host exports no TSC frequency: %v", err)
	}
	if khz < 100_000 || khz > 10_000_000 {
		t.Errorf("HostTSCkHz = %d, not a CPU clock", khz)
	}
}

func TestRestoreArgs(t *testing.T) {
	if got := RestoreArgs(3); len(got) != 2 || got[0] != "-incoming" || got[1] != "fd:3" {
		t.Errorf("RestoreArgs(3) = %q", got)
	}
}

func TestOptValue(t *testing.T) {
	if got := OptValue("/a,b=c/x"); got != "/a,,b=c/x" {
		t.Errorf("OptValue = %q", got)
	}
}
