package nodeproto

import (
	"strings"
	"testing"

	"github.com/denhq/den/internal/errdefs"
)

func TestTokenRoundTrip(t *testing.T) {
	tok, err := NewToken("sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseToken(" " + tok.String() + "\n")
	if err != nil || got != tok {
		t.Fatalf("parse %q: %+v, %v; want %+v", tok.String(), got, err, tok)
	}
	if got.SecretHash() == got.Secret || len(got.SecretHash()) != 64 {
		t.Fatalf("secret hash %q", got.SecretHash())
	}
}

func TestParseTokenErrors(t *testing.T) {
	hash, id, secret := strings.Repeat("a", 64), "0123456789ab", strings.Repeat("f", 40)
	for _, tt := range []struct{ name, in, want string }{
		{"empty", "", "1 dot-separated parts, want 4"},
		{"parts", "den1." + hash + "." + id, "3 dot-separated parts, want 4"},
		{"version", "den2." + hash + "." + id + "." + secret, "it does not start with den1"},
		{"hash", "den1.xyz." + id + "." + secret, "the CA hash is not 64 hex digits"},
		{"id", "den1." + hash + ".ID." + secret, "the ID is not 6-32 hex digits"},
		{"secret", "den1." + hash + "." + id + ".short", "the secret is not 32-128 hex digits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseToken(tt.in)
			if errdefs.KindOf(err) != errdefs.InvalidArgument || !strings.Contains(err.Error(), "malformed join token: "+tt.want) {
				t.Fatalf("ParseToken(%q): %v, want InvalidArgument %q", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error repeats the secret: %v", err)
			}
		})
	}
}

func TestValidateLabels(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"ok", map[string]string{"zone": "eu-1", "den.dev/gpu": "a100"}, ""},
		{"upper key", map[string]string{"Zone": "a"}, `label key "Zone" must be`},
		{"control value", map[string]string{"zone": "a\nb"}, "label zone: the value must be"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateLabels(tt.labels)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if errdefs.KindOf(err) != errdefs.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want %q", err, tt.want)
			}
		})
	}
}
