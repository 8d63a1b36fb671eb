package den

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/denhq/den/api/rest"
)

// AddSSHKey registers an SSH public key (one authorized_keys line) for
// the caller's tenant: its holder may then log in to the tenant's
// sandboxes through den's SSH gateway. name may be empty (the key's
// comment, or a generated name).
func (c *Client) AddSSHKey(ctx context.Context, name, publicKey string) (*rest.SSHKey, error) {
	var k rest.SSHKey
	req := rest.AddSSHKeyRequest{Name: name, PublicKey: publicKey}
	if err := c.doJSON(ctx, http.MethodPost, "/v1/ssh-keys", nil, req, &k); err != nil {
		return nil, fmt.Errorf("add ssh key: %w", err)
	}
	return &k, nil
}

// ListSSHKeys returns the tenant's SSH keys, oldest first.
func (c *Client) ListSSHKeys(ctx context.Context) ([]rest.SSHKey, error) {
	var l rest.SSHKeyList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/ssh-keys", nil, nil, &l); err != nil {
		return nil, fmt.Errorf("list ssh keys: %w", err)
	}
	return l.SSHKeys, nil
}

// DeleteSSHKey removes an SSH key by ID or name. Connections already
// logged in with it go on.
func (c *Client) DeleteSSHKey(ctx context.Context, idOrName string) error {
	if err := c.doJSON(ctx, http.MethodDelete, "/v1/ssh-keys/"+url.PathEscape(idOrName), nil, nil, nil); err != nil {
		return fmt.Errorf("delete ssh key %s: %w", idOrName, err)
	}
	return nil
}
