package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/denhq/den/api/rest"
)

// newPublicKey returns a fresh ed25519 key as an authorized_keys line
// with comment, and its fingerprint.
func newPublicKey(t *testing.T, comment string) (string, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " " + comment, ssh.FingerprintSHA256(pk)
}

func addKeyBody(name, key string) string {
	b, _ := json.Marshal(rest.AddSSHKeyRequest{Name: name, PublicKey: key})
	return string(b)
}

func TestSSHKeys(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	line, fp := newPublicKey(t, "alice@laptop")
	var k rest.SSHKey
	e.doJSON("POST", "/v1/ssh-keys", e.keyA, addKeyBody("", line), http.StatusCreated, &k)
	if !strings.HasPrefix(k.ID, "sshkey-") || k.Name != "alice@laptop" || k.Fingerprint != fp || k.PublicKey != line {
		t.Fatalf("added key: %+v", k)
	}
	// The same key again, or the same name, is a conflict; another tenant
	// may register the same key.
	status, body := e.do("POST", "/v1/ssh-keys", e.keyA, addKeyBody("other", line))
	checkAPIError(t, status, body, http.StatusConflict, rest.Error{Code: "already_exists", Message: "ssh key " + fp + " is already registered as " + k.ID})
	line2, _ := newPublicKey(t, "")
	status, body = e.do("POST", "/v1/ssh-keys", e.keyA, addKeyBody("alice@laptop", line2))
	checkAPIError(t, status, body, http.StatusConflict, rest.Error{Code: "already_exists", Message: `ssh key name "alice@laptop" is taken by ssh key ` + k.ID})
	e.doJSON("POST", "/v1/ssh-keys", e.keyB, addKeyBody("", line), http.StatusCreated, nil)

	bad := []struct{ name, key, msg string }{
		{"empty", "", "public_key is empty: send one line of an authorized_keys file, e.g. ~/.ssh/id_ed25519.pub"},
		{"garbage", "ssh-ed25519 !!!", "public_key is not an SSH public key: want TYPE BASE64 [COMMENT], e.g. ssh-ed25519 AAAAC3... you@host"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "public_key is a private key: send the public one (the .pub file)"},
		{"two lines", line + "\n" + line2, "public_key has several lines: send one key"},
		{"options", `command="ls" ` + line2, "public_key has authorized_keys options: send the key alone"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do("POST", "/v1/ssh-keys", e.keyA, addKeyBody("", tt.key))
			checkAPIError(t, status, body, http.StatusBadRequest, rest.Error{Code: "invalid_argument", Message: tt.msg})
		})
	}
	status, body = e.do("POST", "/v1/ssh-keys", e.keyA, addKeyBody("has space", line2))
	checkAPIError(t, status, body, http.StatusBadRequest, rest.Error{Code: "invalid_argument",
		Message: `name "has space" is invalid: use 1-63 letters, digits, '.', '_', '@' and '-', starting with a letter or digit`})

	var list rest.SSHKeyList
	e.doJSON("GET", "/v1/ssh-keys", e.keyA, "", http.StatusOK, &list)
	if len(list.SSHKeys) != 1 || list.SSHKeys[0].ID != k.ID {
		t.Fatalf("tenant A lists %+v", list.SSHKeys)
	}
	// Another tenant's key is not found, by ID or by name.
	e.doJSON("DELETE", "/v1/ssh-keys/"+k.ID, e.keyB, "", http.StatusNotFound, nil)
	e.doJSON("DELETE", "/v1/ssh-keys/alice@laptop", e.keyA, "", http.StatusNoContent, nil)
	e.doJSON("GET", "/v1/ssh-keys", e.keyA, "", http.StatusOK, &list)
	if len(list.SSHKeys) != 0 {
		t.Fatalf("after delete tenant A lists %+v", list.SSHKeys)
	}
}

func TestSSHBackendAuthorize(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	line, fp := newPublicKey(t, "")
	e.doJSON("POST", "/v1/ssh-keys", e.keyA, addKeyBody("a", line), http.StatusCreated, nil)
	sbA := e.create(e.keyA, `{"image":"busybox","name":"mine"}`)
	sbB := e.create(e.keyB, `{"image":"busybox","name":"theirs"}`)
	b := e.srv.SSHBackend()
	ctx := context.Background()
	for _, user := range []string{sbA.ID, "mine"} {
		got, err := b.Authorize(ctx, user, fp)
		if err != nil || got.ID != sbA.ID || got.Name != "mine" {
			t.Fatalf("authorize %s: %+v, %v", user, got, err)
		}
	}
	_, otherFP := newPublicKey(t, "")
	for _, tt := range []struct{ user, fp string }{{sbB.ID, fp}, {"theirs", fp}, {"nope", fp}, {sbA.ID, otherFP}} {
		if got, err := b.Authorize(ctx, tt.user, tt.fp); err == nil {
			t.Fatalf("authorize %s with %s: %+v, want refused", tt.user, tt.fp, got)
		}
	}
	// Begin counts the sandbox active until end.
	end, err := b.Begin(ctx, sbA.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, active := e.srv.activity.idleSince(sbA.ID, e.clock.Now()); !active {
		t.Fatal("sandbox not active during an ssh connection")
	}
	end()
	if _, active := e.srv.activity.idleSince(sbA.ID, e.clock.Now()); active {
		t.Fatal("sandbox still active after the ssh connection")
	}
}
