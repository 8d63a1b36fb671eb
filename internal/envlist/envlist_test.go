package envlist

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	base := []string{"A=1", "PATH=/img"}
	got := Merge(base, map[string]string{"A": "2", "C": "3", "B": "4"})
	if want := []string{"A=2", "PATH=/img", "B=4", "C=3"}; !cmp.Equal(got, want) {
		t.Errorf("Merge = %q, want %q", got, want)
	}
	if base[0] != "A=1" {
		t.Errorf("Merge modified its base: %q", base)
	}
	if !Has(got, "PATH") || Has(got, "PAT") {
		t.Errorf("Has misreads %q", got)
	}
}
