package cli

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/denhq/den/internal/image"
)

func TestTinyDockerArchiveImports(t *testing.T) {
	archive, err := tinyDockerArchive(benchImage)
	if err != nil {
		t.Fatal(err)
	}
	st, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Import(context.Background(), bytes.NewReader(archive), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(benchImage); err != nil || got.ID != img.ID {
		t.Fatalf("the archive's name %s: %+v %v", benchImage, got, err)
	}
}

func TestFanOutCountsEveryOperation(t *testing.T) {
	var calls atomic.Int64
	s := fanOut(1000, 64, func(i int) error {
		calls.Add(1)
		if i%10 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	if calls.Load() != 1000 || s.N != 1000 || s.OK != 900 || len(s.Errors) == 0 {
		t.Fatalf("calls %d, stats %+v", calls.Load(), s)
	}
}
