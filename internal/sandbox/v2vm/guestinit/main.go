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
	if err := guest.LoopbackUp(); err != nil {
		return err
	}
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
