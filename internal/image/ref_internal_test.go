package image

import "testing"

func TestReferenceName(t *testing.T) {
	tests := []struct{ ref, want string }{
		{"alpine", "docker.io/library/alpine:latest"},
		{"alpine:3.20", "docker.io/library/alpine:3.20"},
		{"docker.io/library/alpine:3.20", "docker.io/library/alpine:3.20"},
		{"index.docker.io/team/app", "docker.io/team/app:latest"},
		{"127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app:latest"},
		{"ghcr.io/o/r:v1", "ghcr.io/o/r:v1"},
		{"localhost:5000/r@sha256:" + sixtyFourZeros, "localhost:5000/r@sha256:" + sixtyFourZeros},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			r, err := parseReference(tt.ref, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := referenceName(r); got != tt.want {
				t.Errorf("referenceName(%s) = %s, want %s", tt.ref, got, tt.want)
			}
		})
	}
}

const sixtyFourZeros = "0000000000000000000000000000000000000000000000000000000000000000"

func TestLookupNormalisedName(t *testing.T) {
	idx := index{Images: []Image{{Name: "docker.io/library/alpine:3.20", ID: "sha256:" + sixtyFourZeros}, {Name: "base", ID: "sha256:1" + sixtyFourZeros[1:]}}}
	for ref, want := range map[string]string{
		"alpine:3.20":                   "docker.io/library/alpine:3.20",
		"library/alpine:3.20":           "docker.io/library/alpine:3.20",
		"index.docker.io/alpine:3.20":   "docker.io/library/alpine:3.20",
		"docker.io/library/alpine:3.20": "docker.io/library/alpine:3.20",
		"base:latest":                   "base",
	} {
		img, err := idx.lookup(ref)
		if err != nil || img.Name != want {
			t.Errorf("lookup(%s) = %v, %v; want %s", ref, img, err, want)
		}
	}
	if _, err := idx.lookup("alpine"); err == nil {
		t.Errorf("lookup(alpine) found an image; want none (alpine:latest is not stored)")
	}
}
