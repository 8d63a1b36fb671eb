package qemu

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestTapArgs checks a VM with a NIC gets the tap as the extra file after
// the stream (if any), and its descriptor and den.net on the command
// line; one without has neither.
func TestTapArgs(t *testing.T) {
	stream, tap := os.Stdin, os.Stdout // any two distinct files
	netArg := "den.net=172.31.255.254/30,172.31.255.253,10.88.0.1"
	tests := []struct {
		name     string
		v        vm
		files    []*os.File
		netdev   string // "" for none
		hasNetIn bool
	}{
		{"None", vm{}, nil, "", false},
		{"Boot", vm{tap: tap, netArg: netArg}, []*os.File{tap}, "tap,id=net0,vhost=off,fd=3", true},
		{"Restore", vm{incoming: stream, tap: tap, netArg: netArg}, []*os.File{stream, tap}, "tap,id=net0,vhost=off,fd=4", true},
		{"RestoreWithout", vm{incoming: stream}, []*os.File{stream}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.v.accel = "kvm"
			if got := tt.v.extraFiles(); !slices.Equal(got, tt.files) {
				t.Errorf("extraFiles = %v, want %v", got, tt.files)
			}
			args := tt.v.args()
			netdev := ""
			if i := slices.Index(args, "-netdev"); i >= 0 {
				netdev = args[i+1]
			}
			if netdev != tt.netdev {
				t.Errorf("-netdev %q, want %q", netdev, tt.netdev)
			}
			cmdline := args[slices.Index(args, "-append")+1]
			kernelPart, _, _ := strings.Cut(cmdline, " -- ")
			if strings.Contains(kernelPart, netArg) != tt.hasNetIn {
				t.Errorf("kernel command line %q: den.net given = %v, want %v", cmdline, !tt.hasNetIn, tt.hasNetIn)
			}
		})
	}
}
