package cli

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/server"
)

func newMicroVMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "microvm",
		Short: "Prepare this machine for --sandbox-driver microvm",
	}
	var data, vmInit, kernelCache string
	setup := &cobra.Command{
		Use:   "setup",
		Short: "Get the guest kernel (apt-get download) and build the guest image into the data dir (idempotent)",
		Long: "Checks for QEMU and mkfs.ext4, gets Debian's cloud kernel package with apt-get download into the\n" +
			"machine's VM cache, and builds the guest image (initramfs with flint-vm-init, read-only root image\n" +
			"with the host's shell tools, Python and Node) into DATA/vm/image. Running it again rebuilds only\n" +
			"what changed. `flint server --sandbox-driver microvm` runs the same step when it is needed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			abs, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			init, err := server.FindVMInit(vmInit)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			res, err := microvm.Setup(cmd.Context(), microvm.SetupConfig{
				DataDir: abs, InitPath: init, KernelCache: kernelCache, Logger: log,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "microVM guest ready: kernel %s (%s), image %s, QEMU %s\n",
				res.Kernel.Release, res.Kernel.Dir, res.ImageDir, res.QEMU)
			return nil
		},
	}
	f := setup.Flags()
	f.StringVar(&data, "data", defaultDataDir(), "data dir of the server that will use the image")
	f.StringVar(&vmInit, "vm-init", "", "the flint-vm-init binary (default: next to this binary, then on PATH)")
	f.StringVar(&kernelCache, "kernel-cache", "", "where the kernel package is unpacked (default $FLINT_VM_CACHE, else ~/.cache/flint/vm)")
	cmd.AddCommand(setup)
	return cmd
}
