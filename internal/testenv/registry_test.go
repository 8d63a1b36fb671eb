package testenv_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/denhq/den/internal/testenv"
)

func TestRegistryAuth(t *testing.T) {
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		opts      testenv.RegistryOptions
		challenge string // prefix of the WWW-Authenticate of an anonymous request
	}{
		{"open", testenv.RegistryOptions{}, ""},
		{"basic", testenv.RegistryOptions{Username: "u", Password: "p"}, `Basic realm="den-test-registry"`},
		{"token", testenv.RegistryOptions{Username: "u", Password: "p", Token: true}, `Bearer realm="http://HOST/token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := testenv.Registry(t, tt.opts)
			ref, _ := name.ParseReference(host + "/r:1")
			if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "u", Password: "p"})); err != nil {
				t.Fatalf("push with the credentials: %v", err)
			}
			resp, err := http.Get("http://" + host + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("WWW-Authenticate")
			if want := strings.ReplaceAll(tt.challenge, "HOST", host); !strings.HasPrefix(got, want) || (want == "") != (resp.StatusCode == 200) {
				t.Errorf("anonymous /v2/ = %d %q, want challenge %q", resp.StatusCode, got, want)
			}
			if tt.challenge != "" {
				if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "u", Password: "bad"})); err == nil {
					t.Errorf("push with a wrong password succeeded")
				}
			}
		})
	}
}

func TestRegistryBlobFaults(t *testing.T) {
	img, err := random.Image(4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	blob, _ := io.ReadAll(rc)
	var mu sync.Mutex
	var fault testenv.BlobFault
	served := make(chan int64, 1)
	host := testenv.Registry(t, testenv.RegistryOptions{
		Blob: func(testenv.BlobRequest) testenv.BlobFault {
			mu.Lock()
			defer mu.Unlock()
			return fault
		},
		Served: func(_ string, n int64) { served <- n },
	})
	ref, _ := name.ParseReference(host + "/r:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	get := func(rng string) (int, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v2/r/blobs/%s", host, digest), nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, err
	}
	tests := []struct {
		name   string
		fault  testenv.BlobFault
		rng    string
		status int
		check  func(body []byte, err error) bool
	}{
		{"faithful", testenv.BlobFault{}, "", 200, func(b []byte, err error) bool { return err == nil && bytes.Equal(b, blob) }},
		{"range", testenv.BlobFault{}, "bytes=10-19", 206, func(b []byte, err error) bool { return err == nil && bytes.Equal(b, blob[10:20]) }},
		{"ignore range", testenv.BlobFault{IgnoreRange: true}, "bytes=10-19", 200, func(b []byte, err error) bool { return err == nil && bytes.Equal(b, blob) }},
		{"corrupt", testenv.BlobFault{Corrupt: true}, "", 200, func(b []byte, err error) bool {
			sum := sha256.Sum256(b)
			return err == nil && len(b) == len(blob) && "sha256:"+hex.EncodeToString(sum[:]) != digest.String() && b[len(b)/2] == blob[len(b)/2]^0xff
		}},
		{"drop", testenv.BlobFault{DropAfter: 100}, "", 200, func(b []byte, err error) bool {
			return err == io.ErrUnexpectedEOF && bytes.Equal(b, blob[:100])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			fault = tt.fault
			mu.Unlock()
			status, body, err := get(tt.rng)
			if status != tt.status || !tt.check(body, err) {
				t.Errorf("GET = %d, %d bytes, %v", status, len(body), err)
			}
			select {
			case n := <-served:
				if n != int64(len(body)) {
					t.Errorf("Served %d bytes, want %d", n, len(body))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Served was not called")
			}
		})
	}
}
