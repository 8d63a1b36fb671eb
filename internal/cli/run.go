package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// deleteTimeout bounds the clean-up delete of `den run`.
const deleteTimeout = time.Minute

func (a *app) runCmd() *cobra.Command {
	var cf createFlags
	var ef execFlags
	cmd := &cobra.Command{
		Use:         "run [IMAGE] [flags] -- CMD [ARGS...]",
		Short:       "Create a sandbox, run a command in it, delete it, and exit with the command's code",
		Annotations: map[string]string{annotationCommandAfterDash: "true"},
		Args:        argsBetween(1, -1, "a command after -- (den run [IMAGE] -- CMD [ARGS...])"),
		RunE: func(cmd *cobra.Command, args []string) error {
			image, argv, err := splitRunArgs(cmd, args)
			if err != nil {
				return err
			}
			req, err := cf.request(cmd, image)
			if err != nil {
				return err
			}
			if _, err := ef.options(cmd, argv); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sigs, stop := notifyInterrupt()
			defer stop()
			return execExit(a.runOnce(cmd, c, req, &ef, argv, sigs))
		},
	}
	cf.register(cmd.Flags())
	ef.register(cmd.Flags(), false)
	return cmd
}

// splitRunArgs splits `[IMAGE] -- CMD...` into the image ("" = default)
// and the command.
func splitRunArgs(cmd *cobra.Command, args []string) (string, []string, error) {
	at := cmd.ArgsLenAtDash()
	if at < 0 || at > 1 || at == len(args) {
		return "", nil, usagef(cmd, "den run needs the command after --: den run [IMAGE] [flags] -- CMD [ARGS...]")
	}
	return firstOr(args[:at], ""), args[at:], nil
}

// runOnce creates a sandbox, runs argv in it and deletes it, even when the
// command fails or the user interrupts. An interrupt during the create
// abandons the run (exit 130).
func (a *app) runOnce(cmd *cobra.Command, c *den.Client, req rest.CreateSandboxRequest, f *execFlags, argv []string, sigs <-chan os.Signal) (int, error) {
	ctx := cmd.Context()
	createCtx, cancel := context.WithCancel(ctx)
	created := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-sigs:
			cancel()
		case <-created:
		}
	})
	sb, err := c.Create(createCtx, req)
	close(created)
	wg.Wait()
	interrupted := createCtx.Err() != nil
	cancel()
	if sb != nil {
		defer deleteSandbox(ctx, cmd, c, sb.ID)
	}
	if interrupted {
		return 130, nil
	}
	if err != nil {
		return 0, err
	}
	return a.execIn(ctx, cmd, sb, f, argv, sigs)
}

// deleteSandbox deletes id, reporting a failure on stderr. It runs even
// when ctx is cancelled.
func deleteSandbox(ctx context.Context, cmd *cobra.Command, c *den.Client, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if err := c.Delete(ctx, id); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "den: sandbox %s was not deleted: %v\n", id, err)
	}
}
