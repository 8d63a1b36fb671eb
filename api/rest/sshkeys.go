package rest

import "time"

// AddSSHKeyRequest registers an SSH public key for the caller's tenant:
// its holder may then log in to the tenant's sandboxes through the SSH
// gateway (`ssh -p 2222 SANDBOX@host`).
type AddSSHKeyRequest struct {
	// Name is optional and unique among the tenant's keys; empty: the
	// key's comment when it is a valid name, else "key-" and the start of
	// its fingerprint.
	Name string `json:"name,omitempty"`
	// PublicKey is one authorized_keys line, e.g. the contents of
	// ~/.ssh/id_ed25519.pub.
	PublicKey string `json:"public_key"`
}

// SSHKey is a registered SSH public key as the API shows it.
type SSHKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// PublicKey is the key as one authorized_keys line.
	PublicKey string `json:"public_key"`
	// Fingerprint is the SHA256 fingerprint, as `ssh-keygen -l` prints it.
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"created_at"`
}

// SSHKeyList is the answer of GET /v1/ssh-keys, oldest first.
type SSHKeyList struct {
	SSHKeys []SSHKey `json:"ssh_keys"`
}
