package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
)

// envSandboxURL names the address of the sandbox traffic listener in the
// environment and in den up's env file.
const envSandboxURL = "E2B_SANDBOX_URL"

// portURL is what `den port` prints: the URL of a port of a sandbox and
// the header that authorises requests to it.
type portURL struct {
	URL    string `json:"url"`
	Header string `json:"header,omitempty"`
	// id and token sign URLs.
	id, token string
}

// portCmd is `den port ID PORT`.
func (a *app) portCmd() *cobra.Command {
	var sandboxURL string
	var public, private bool
	var signed time.Duration
	cmd := &cobra.Command{
		Use:   "port ID PORT [--public | --private] [--signed DURATION]",
		Short: "Print the URL of a port inside a sandbox and the header to send with it",
		Long: `Print the URL at which a server listening on PORT inside the sandbox is
reachable through den's sandbox traffic listener (E2B_SANDBOX_URL), and the
header that authorises requests to it (the sandbox's access token):

  curl -H "X-Access-Token: <token>" http://8080-<id>.localhost:3001/

HTTP, WebSocket and server-sent events are forwarded through the sandbox's
guest agent, with or without a sandbox network.

Ports are private: a request needs the header, or a signed URL
(--signed 1h prints one that works without the header until it expires,
for a browser: its first answer sets a cookie for the page's other
requests). --public makes the port's URL open to anyone who knows it,
--private closes it again (PORT 0: every port).`,
		Args: argsBetween(2, 2, "a sandbox ID or name and a port"),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.ParseUint(args[1], 10, 16)
			if err != nil || (port == 0 && !public && !private) {
				return usagef(cmd, "invalid port %q: want a number from 1 to 65535 (0, every port, only with --public or --private)", args[1])
			}
			if public && private {
				return usagef(cmd, "--public and --private exclude each other")
			}
			if signed < 0 {
				return usagef(cmd, "--signed %s: want a positive duration such as 1h", signed)
			}
			if public || private {
				c, err := a.client()
				if err != nil {
					return err
				}
				if _, err := c.SetPortPublic(cmd.Context(), args[0], int(port), public); err != nil {
					return err
				}
				if port == 0 {
					return nil
				}
			}
			p, err := a.portURL(cmd.Context(), args[0], int(port), sandboxURL)
			if err != nil {
				return err
			}
			if public {
				p.Header = ""
			}
			if signed > 0 {
				exp := time.Now().Add(signed).Unix()
				u, _ := url.Parse(p.URL)
				q := u.Query()
				q.Set(rest.PortSignatureParam, rest.PortSignature(p.token, p.id, int(port), exp))
				q.Set(rest.PortExpiresParam, strconv.FormatInt(exp, 10))
				u.RawQuery = q.Encode()
				p.URL, p.Header = u.String(), ""
			}
			if a.json {
				return printJSON(cmd.OutOrStdout(), p)
			}
			if p.Header == "" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), p.URL)
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", p.URL, p.Header)
			return err
		},
	}
	cmd.Flags().BoolVar(&public, "public", false, "make the port's URL public: no token needed")
	cmd.Flags().BoolVar(&private, "private", false, "make the port private again (the default)")
	cmd.Flags().DurationVar(&signed, "signed", 0, "print a signed URL that works without the header for this long (e.g. 1h)")
	cmd.Flags().StringVar(&sandboxURL, "sandbox-url", "", "address of the sandbox traffic listener (default: $"+envSandboxURL+", else the data dir's env file)")
	return cmd
}

// portURL builds the URL of port of sandbox idOrName. It reads the
// sandbox's ID, access token and domain from the E2B facade's GET
// /sandboxes/{id} on den's API listener: den's own API does not return
// the access token.
func (a *app) portURL(ctx context.Context, idOrName string, port int, sandboxURL string) (portURL, error) {
	opts, err := a.options()
	if err != nil {
		return portURL{}, err
	}
	base, err := a.sandboxListener(sandboxURL)
	if err != nil {
		return portURL{}, err
	}
	sb, err := getE2BSandbox(ctx, opts, idOrName)
	if err != nil {
		return portURL{}, err
	}
	domain := sb.Domain
	if domain == "" {
		domain = "localhost"
	}
	host := fmt.Sprintf("%d-%s.%s", port, sb.SandboxID, domain)
	if p := base.Port(); p != "" {
		host = net.JoinHostPort(host, p)
	}
	u := url.URL{Scheme: base.Scheme, Host: host, Path: "/"}
	return portURL{URL: u.String(), Header: "X-Access-Token: " + sb.EnvdAccessToken, id: sb.SandboxID, token: sb.EnvdAccessToken}, nil
}

// sandboxListener returns the URL of the sandbox traffic listener: flag,
// else $E2B_SANDBOX_URL, else the env file in the data directory.
func (a *app) sandboxListener(flag string) (*url.URL, error) {
	s := flag
	if s == "" {
		s = os.Getenv(envSandboxURL)
	}
	if s == "" {
		dir := a.dataDir
		if dir == "" {
			dir = den.DefaultDataDir()
		}
		vars, err := den.ReadEnvFile(filepath.Join(dir, "env"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		s = vars[envSandboxURL]
	}
	if s == "" {
		return nil, fmt.Errorf("the sandbox traffic address is unknown: set %s or --sandbox-url (den up writes it to <data-dir>/env)", envSandboxURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sandbox traffic address %q: want http://HOST:PORT", s)
	}
	return u, nil
}

// e2bSandbox is the part of the E2B facade's sandbox detail `den port`
// reads.
type e2bSandbox struct {
	SandboxID       string `json:"sandboxID"`
	EnvdAccessToken string `json:"envdAccessToken"`
	Domain          string `json:"domain"`
}

// getE2BSandbox reads GET /sandboxes/{idOrName} of the E2B facade, which den
// serves next to its /v1 API and which takes den's API keys.
func getE2BSandbox(ctx context.Context, opts den.Options, idOrName string) (e2bSandbox, error) {
	u := strings.TrimSuffix(opts.URL, "/") + "/sandboxes/" + url.PathEscape(idOrName)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return e2bSandbox{}, err
	}
	req.Header.Set("X-API-Key", opts.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return e2bSandbox{}, fmt.Errorf("get sandbox %s: %w", idOrName, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return e2bSandbox{}, fmt.Errorf("get sandbox %s: %w", idOrName, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = resp.Status
		}
		return e2bSandbox{}, fmt.Errorf("get sandbox %s: %s", idOrName, e.Message)
	}
	var sb e2bSandbox
	if err := json.Unmarshal(data, &sb); err != nil {
		return e2bSandbox{}, fmt.Errorf("get sandbox %s: %w", idOrName, err)
	}
	if sb.EnvdAccessToken == "" {
		return e2bSandbox{}, fmt.Errorf("get sandbox %s: the server returned no access token", idOrName)
	}
	return sb, nil
}
