package cli

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/denhq/den/api/rest"
)

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
		Args:  argsBetween(0, 0, "a subcommand (ls, build, pull, push, tag, inspect, export, import, rm, prune)"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.imageLsCmd(), a.imageBuildCmd(), a.imagePullCmd(), a.imagePushCmd(),
		a.imageTagCmd(), a.imageInspectCmd(), a.imageExportCmd(), a.imageImportCmd(),
		a.imageRmCmd(), a.imagePruneCmd())
	return cmd
}

func (a *app) imageLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			imgs, err := c.Images().List(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), rest.ImageList{Images: imgs})
			}
			return printImages(cmd.OutOrStdout(), imgs, time.Now())
		},
	}
}

func printImages(w io.Writer, imgs []rest.Image, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSIZE\tAGE")
	for _, im := range imgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", im.Name, shortID(im.ID), bytesHuman(im.Size), age(now.Sub(im.CreatedAt)))
	}
	return tw.Flush()
}

// shortID shortens a digest for tables: sha256:0123456789ab.
func shortID(id string) string {
	if len(id) > len("sha256:")+12 {
		return id[:len("sha256:")+12]
	}
	return id
}

// bytesHuman renders n bytes as B, KiB, MiB or GiB.
func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, suffix := float64(n), "B"
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f%s", v, suffix)
}

func (a *app) imageImportCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an image archive (docker save or OCI-layout tar; - reads stdin)",
		Args:  argsBetween(1, 1, "one archive FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			if isTerminal(cmd.ErrOrStderr()) {
				p := &progressReader{r: r, w: cmd.ErrOrStderr()}
				defer p.done()
				r = p
			}
			img, err := c.Images().Import(cmd.Context(), r, name)
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
	cmd.Flags().StringVar(&name, "name", "", "name of the image (default: from the archive)")
	return cmd
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressReader reports the bytes read so far on w, at most once per MiB.
type progressReader struct {
	r          io.Reader
	w          io.Writer
	n, printed int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.printed >= 1<<20 {
		p.printed = p.n
		fmt.Fprintf(p.w, "\rsent %s", bytesHuman(p.n))
	}
	return n, err
}

func (p *progressReader) done() {
	if p.printed > 0 {
		fmt.Fprintf(p.w, "\rsent %s\n", bytesHuman(p.n))
	}
}

func (a *app) imageRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm REF...",
		Short: "Remove images by name or ID",
		Args:  argsBetween(1, -1, "one or more image names or IDs"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			failed := 0
			for _, ref := range args {
				if err := c.Images().Remove(cmd.Context(), ref); err != nil {
					failed++
					report(cmd.ErrOrStderr(), err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			if failed > 0 {
				return &ExitError{Code: 1, Message: fmt.Sprintf("%d of %d images not removed", failed, len(args))}
			}
			return nil
		},
	}
}
