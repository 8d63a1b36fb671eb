package cli

import (
	"bytes"
	"testing"

	"github.com/denhq/den/api/rest"
)

func TestPrintNodes(t *testing.T) {
	var out bytes.Buffer
	err := printNodes(&out, []rest.Node{{
		ID: "local", State: rest.NodeReady, CPUs: 2, MemoryMB: 24000, MemoryAvailableMB: 20000, Sandboxes: 3, Version: "dev",
		Runtimes: []rest.RuntimeInfo{{Name: "gvisor", Default: true}, {Name: "qemu", Accel: "tcg"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "ID     STATE  RUNTIMES            CPUS  MEMORY   AVAILABLE  SANDBOXES  VERSION\n" +
		"local  ready  gvisor, qemu (tcg)  2     24000MB  20000MB    3          dev\n"
	if out.String() != want {
		t.Errorf("printNodes:\n%s\nwant:\n%s", out.String(), want)
	}
}
