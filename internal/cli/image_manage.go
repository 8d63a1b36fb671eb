package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
)

func (a *app) imageTagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SRC NAME",
		Short: "Give the image SRC (a name or ID) the further name NAME",
		Args:  argsBetween(2, 2, "the image SRC and its new NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			img, err := c.Images().Tag(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), img)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", img.Name, img.ID)
			return nil
		},
	}
}

func (a *app) imageInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF",
		Short: "Print an image's details (layers, config, history) as JSON",
		Args:  argsBetween(1, 1, "one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.Images().Inspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), d)
		},
	}
}

// errTarToTerminal refuses to write an archive where a person reads.
var errTarToTerminal = errors.New("refusing to write a tar archive to a terminal: use -o FILE, or redirect stdout")

func (a *app) imageExportCmd() *cobra.Command {
	var out, format string
	cmd := &cobra.Command{
		Use:   "export REF [-o FILE] [--format docker-archive|oci]",
		Short: "Write an image as a tar archive (docker-archive for `docker load`, or an OCI layout)",
		Args:  argsBetween(1, 1, "one image name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != rest.ExportDockerArchive && format != rest.ExportOCI {
				return usagef(cmd, "invalid --format %q: want %s or %s", format, rest.ExportDockerArchive, rest.ExportOCI)
			}
			if (out == "" || out == "-") && isTerminal(cmd.OutOrStdout()) {
				return errTarToTerminal
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			export := func(w io.Writer) error {
				if isTerminal(cmd.ErrOrStderr()) {
					p := &progressWriter{w: w, tty: cmd.ErrOrStderr()}
					defer p.done()
					w = p
				}
				return c.Images().Export(cmd.Context(), args[0], format, w)
			}
			if out == "" || out == "-" {
				return export(cmd.OutOrStdout())
			}
			return writeLocalFunc(out, export)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of stdout")
	cmd.Flags().StringVar(&format, "format", rest.ExportDockerArchive, "archive format: docker-archive or oci")
	return cmd
}

// writeLocalFunc is writeLocal for a producer that writes: dst ends up
// complete or untouched.
func writeLocalFunc(dst string, produce func(io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := produce(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := writeLocal(dst, pr)
	pr.CloseWithError(errStoppedWriting)
	if perr := <-done; perr != nil && !errors.Is(perr, errStoppedWriting) {
		return perr
	}
	return err
}

// errStoppedWriting ends a producer whose file could not be written.
var errStoppedWriting = errors.New("stopped writing")

func (a *app) imagePruneCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete the layers and blobs that no image uses",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.Images().Prune(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d layers and %d blobs, %s freed\n", res.Layers, res.Blobs, bytesHuman(res.Bytes))
			return nil
		},
	}
}
