package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// envSSH names the SSH gateway's address (host:port) in the environment
// and in den up's env file.
const envSSH = "DEN_SSH"

// defaultSSHAddr is the gateway's address when nothing names one.
const defaultSSHAddr = "127.0.0.1:2222"

// sshKeyCmd is `den ssh-key`: the tenant's SSH public keys.
func (a *app) sshKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh-key",
		Short: "Manage the SSH public keys that may log in to your sandboxes",
		Long: "Keys registered here log in to any sandbox of your tenant through den's SSH gateway:\n\n" +
			"  den ssh-key add ~/.ssh/id_ed25519.pub\n  ssh -p 2222 SANDBOX@localhost",
	}
	cmd.AddCommand(a.sshKeyAddCmd(), a.sshKeyLsCmd(), a.sshKeyRmCmd())
	return cmd
}

// defaultPublicKeys are tried in order by `den ssh-key add` without FILE.
var defaultPublicKeys = []string{"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"}

func (a *app) sshKeyAddCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "add [FILE|-]",
		Short: "Register an SSH public key (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub)",
		Args:  argsBetween(0, 1, "at most one public key file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readPublicKey(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.AddSSHKey(cmd.Context(), name, text)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), k)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", k.ID, k.Name, k.Fingerprint)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the key (default: its comment)")
	return cmd
}

// readPublicKey reads the key text: a file, "-" for stdin, or the first
// default key in ~/.ssh.
func readPublicKey(stdin io.Reader, args []string) (string, error) {
	if len(args) == 1 && args[0] == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		return string(b), err
	}
	if len(args) == 1 {
		b, err := os.ReadFile(args[0])
		if err != nil {
			return "", fmt.Errorf("read public key: %w", err)
		}
		return string(b), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find ~/.ssh: %w", err)
	}
	for _, n := range defaultPublicKeys {
		b, err := os.ReadFile(filepath.Join(home, ".ssh", n))
		if err == nil {
			return string(b), nil
		}
	}
	return "", fmt.Errorf("no public key in %s: name a file, or create one with ssh-keygen -t ed25519", filepath.Join(home, ".ssh"))
}

func (a *app) sshKeyLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List your SSH keys",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListSSHKeys(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printSSHKeys(cmd.OutOrStdout(), list, time.Now())
		},
	}
}

func printSSHKeys(w io.Writer, list []rest.SSHKey, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tFINGERPRINT\tAGE")
	for _, k := range list {
		typ, _, _ := strings.Cut(k.PublicKey, " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, typ, k.Fingerprint, age(now.Sub(k.CreatedAt)))
	}
	return tw.Flush()
}

func (a *app) sshKeyRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm KEY...",
		Aliases: []string{"remove"},
		Short:   "Remove SSH keys by ID or name",
		Args:    argsBetween(1, -1, "one or more key IDs or names"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var errs []error
			for _, k := range args {
				if err := c.DeleteSSHKey(cmd.Context(), k); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), k)
			}
			return errors.Join(errs...)
		},
	}
}

// sshCmd is `den ssh ID [-- cmd...]`: the real ssh, pointed at the gateway.
func (a *app) sshCmd() *cobra.Command {
	var addr, identity string
	cmd := &cobra.Command{
		Use:   "ssh ID [-- COMMAND...]",
		Short: "Open an SSH session to a sandbox through den's SSH gateway",
		Long: `Run the ssh client against den's SSH gateway, logged in as the sandbox, with
one of your registered keys (den ssh-key add). Without a command it opens a
login shell; with one, it runs it and exits with its status. Host keys are
recorded in <data-dir>/ssh/known_hosts when that is writable, else in
~/.ssh/known_hosts.`,
		Args:        argsBetween(1, -1, "a sandbox ID or name, then optionally -- and a command"),
		Annotations: map[string]string{annotationCommandAfterDash: "1"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash != -1 && dash != 1 {
				return usagef(cmd, "put the command after --: den ssh ID -- COMMAND")
			}
			gw, err := a.sshAddr(addr)
			if err != nil {
				return err
			}
			bin, err := exec.LookPath("ssh")
			if err != nil {
				return fmt.Errorf("den ssh runs the OpenSSH client, which is not installed: %w", err)
			}
			argv := sshArgs(gw, args[0], identity, a.knownHostsFile(), args[1:])
			return syscall.Exec(bin, argv, os.Environ())
		},
	}
	cmd.Flags().StringVar(&addr, "ssh-addr", "", "address of the SSH gateway (default: $"+envSSH+", else the data dir's env file, else port 2222 of the API's host)")
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "private key file, passed to ssh -i")
	return cmd
}

// sshArgs is the argv of ssh for a session to sandbox through gateway
// addr (host:port).
func sshArgs(addr, sandbox, identity, knownHosts string, command []string) []string {
	host, port, _ := net.SplitHostPort(addr)
	argv := []string{"ssh", "-p", port, "-o", "StrictHostKeyChecking=accept-new"}
	if knownHosts != "" {
		argv = append(argv, "-o", "UserKnownHostsFile="+knownHosts)
	}
	if identity != "" {
		argv = append(argv, "-i", identity)
	}
	argv = append(argv, "-l", sandbox, host)
	if len(command) > 0 {
		argv = append(argv, "--")
		argv = append(argv, command...)
	}
	return argv
}

// sshConfigCmd is `den ssh-config [ID...]`.
func (a *app) sshConfigCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "ssh-config [ID...]",
		Short: "Print ~/.ssh/config blocks for sandboxes (all of yours without IDs)",
		Long: `Print a Host block per sandbox for ~/.ssh/config, so that ssh, scp, rsync and
editors (VS Code Remote-SSH) reach it as den-ID:

  den ssh-config >> ~/.ssh/config && ssh den-<id>`,
		Args: argsBetween(0, -1, "sandbox IDs or names"),
		RunE: func(cmd *cobra.Command, args []string) error {
			gw, err := a.sshAddr(addr)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var ids []string
			for _, id := range args {
				sb, err := c.Get(cmd.Context(), id)
				if err != nil {
					return err
				}
				ids = append(ids, sb.ID)
			}
			if len(args) == 0 {
				l, err := c.List(cmd.Context(), den.ListOptions{})
				if err != nil {
					return err
				}
				for _, sb := range l.Sandboxes {
					ids = append(ids, sb.ID)
				}
			}
			for _, id := range ids {
				fmt.Fprint(cmd.OutOrStdout(), sshConfigBlock(gw, id, a.knownHostsFile()))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "ssh-addr", "", "address of the SSH gateway (default: $"+envSSH+", else the data dir's env file, else port 2222 of the API's host)")
	return cmd
}

// sshConfigBlock is the ssh_config Host block of one sandbox.
func sshConfigBlock(addr, id, knownHosts string) string {
	host, port, _ := net.SplitHostPort(addr)
	var b strings.Builder
	fmt.Fprintf(&b, "Host den-%s\n  HostName %s\n  Port %s\n  User %s\n  StrictHostKeyChecking accept-new\n", id, host, port, id)
	if knownHosts != "" {
		fmt.Fprintf(&b, "  UserKnownHostsFile %s\n", knownHosts)
	}
	return b.String() + "\n"
}

// sshAddr returns the gateway's host:port: flag, else $DEN_SSH, else the
// env file in the data directory, else port 2222 of the API's host.
func (a *app) sshAddr(flag string) (string, error) {
	s := flag
	if s == "" {
		s = os.Getenv(envSSH)
	}
	if s == "" {
		vars, err := den.ReadEnvFile(filepath.Join(a.dataDirOrDefault(), "env"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		s = vars[envSSH]
	}
	if s == "" {
		s = defaultSSHAddr
		if opts, err := a.options(); err == nil {
			if u, err := url.Parse(opts.URL); err == nil && u.Hostname() != "" {
				s = net.JoinHostPort(u.Hostname(), "2222")
			}
		}
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("SSH gateway address %q is not host:port", s)
	}
	return s, nil
}

func (a *app) dataDirOrDefault() string {
	if a.dataDir != "" {
		return a.dataDir
	}
	return den.DefaultDataDir()
}

// knownHostsFile is <data-dir>/ssh/known_hosts when that directory can be
// written, else "" (ssh's own ~/.ssh/known_hosts).
func (a *app) knownHostsFile() string {
	dir := filepath.Join(a.dataDirOrDefault(), "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	if syscall.Access(dir, 2 /* W_OK */) != nil {
		return ""
	}
	return filepath.Join(dir, "known_hosts")
}
