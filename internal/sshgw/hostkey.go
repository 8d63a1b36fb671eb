package sshgw

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// LoadHostKey reads the gateway's ed25519 host key (OpenSSH private key
// format) from path, creating it (0600, its directory 0700) the first
// time, so that clients see the same host key across restarts.
func LoadHostKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createHostKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read ssh host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse ssh host key %s: %w", path, err)
	}
	return signer, nil
}

// createHostKey writes a new ed25519 key to path (to a temporary name
// first: a crash never leaves half a key) and returns it.
func createHostKey(path string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ssh host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "den ssh gateway")
	if err != nil {
		return nil, fmt.Errorf("encode ssh host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create ssh host key: %w", err)
	}
	tmp := path + ".tmp"
	if err := writeSynced(tmp, pem.EncodeToMemory(block)); err != nil {
		return nil, fmt.Errorf("create ssh host key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("create ssh host key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// writeSynced writes data to a new file at path (0600) and fsyncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
