package den_test

import (
	"testing"

	den "github.com/denhq/den/sdk/go"
)

// BenchmarkSandboxHandle: what a handle costs before its first call (a
// benchmark client makes one per sandbox).
func BenchmarkSandboxHandle(b *testing.B) {
	c, err := den.NewClient(den.Options{URL: "http://127.0.0.1:1", APIKey: "k"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if c.Sandbox("sbx-0123456789").ID == "" {
			b.Fatal("no ID")
		}
	}
}
