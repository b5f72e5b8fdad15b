//go:build linux

// Command guestinit is PID 1 of the cgroup v2 test guest (see package
// v2vm): it makes a tmpfs root, mounts the kernel's file systems and
// cgroup2, enables the controllers, runs the plan's test binaries with
// their output on the serial console, and reboots, which ends QEMU. It
// runs only inside the guest.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/sandbox/v2vm"
	"github.com/flintdev/flint/internal/vm/guest"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guestinit: runs only as PID 1 of a guest")
		os.Exit(2)
	}
	err := run()
	if err != nil {
		fmt.Printf("%sfailed: %v\n", v2vm.MarkDone, err)
	} else {
		fmt.Printf("%sok\n", v2vm.MarkDone)
	}
	if err := guest.Reboot(); err != nil {
		fmt.Printf("guestinit: reboot: %v\n", err)
	}
	select {} // PID 1 must not exit: the kernel would panic
}

func run() error {
	if err := guest.ConsoleOnStdio(); err != nil {
		return err
	}
	if err := guest.MoveRootToTmpfs(); err != nil {
		return err
	}
	if err := guest.MountBasics(); err != nil {
		return err
	}
	b, err := os.ReadFile(v2vm.PlanPath)
	if err != nil {
		return err
	}
	var plan v2vm.Plan
	if err := json.Unmarshal(b, &plan); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if err := guest.MountCgroup2("/sys/fs/cgroup", plan.Controllers...); err != nil {
		return err
	}
	if err := guest.LoadModules(plan.Modules); err != nil {
		return err
	}
	if b, err := os.ReadFile("/proc/modules"); err == nil {
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				names = append(names, f[0])
			}
		}
		fmt.Printf("%s%s\n", v2vm.MarkModules, strings.Join(names, " "))
	}
	if err := guest.LoopbackUp(); err != nil {
		return err
	}
	stop := watchMemory()
	defer stop()
	up, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("%s%s\n", v2vm.MarkReady, strings.Fields(string(up) + " ?")[0])
	var failed []string
	for _, s := range plan.Steps {
		fmt.Printf("%s%s\n", v2vm.MarkStep, s.Name)
		t0 := time.Now()
		code, err := guest.Run(s.Path, s.Args, plan.Env, s.Dir)
		if err != nil {
			fmt.Printf("guestinit: %v\n", err)
		}
		fmt.Printf("%s%s exit=%d seconds=%.1f\n", v2vm.MarkStepEnd, s.Name, code, time.Since(t0).Seconds())
		if code != 0 {
			failed = append(failed, s.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("steps failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// watchMemory samples MemAvailable every 100 ms until the returned func is
// called, which prints the lowest value seen (see v2vm.MarkMemory).
func watchMemory() (stop func()) {
	done := make(chan struct{})
	result := make(chan [2]int)
	go func() {
		low, total := -1, 0
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if avail, tot := meminfo(); avail >= 0 && (low < 0 || avail < low) {
				low, total = avail, tot
			}
			select {
			case <-done:
				result <- [2]int{low, total}
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		r := <-result
		fmt.Printf("%smin-available-kib=%d total-kib=%d\n", v2vm.MarkMemory, r[0], r[1])
	}
}

// meminfo returns MemAvailable and MemTotal in KiB (-1 when unreadable).
func meminfo() (avail, total int) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1, 0
	}
	avail = -1
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemAvailable:":
			avail = v
		case "MemTotal:":
			total = v
		}
	}
	return avail, total
}
