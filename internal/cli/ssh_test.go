package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSSHArgs(t *testing.T) {
	tests := []struct {
		name     string
		identity string
		known    string
		command  []string
		want     []string
	}{
		{"shell", "", "/d/ssh/known_hosts", nil,
			[]string{"ssh", "-p", "2222", "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/d/ssh/known_hosts", "-l", "sb1", "127.0.0.1"}},
		{"command with a key, user's known_hosts", "/k", "", []string{"ls", "-l"},
			[]string{"ssh", "-p", "2222", "-o", "StrictHostKeyChecking=accept-new", "-i", "/k", "-l", "sb1", "127.0.0.1", "--", "ls", "-l"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sshArgs("127.0.0.1:2222", "sb1", tt.identity, tt.known, tt.command)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("argv (-want +got):\n%s", d)
			}
		})
	}
}

func TestSSHConfigBlock(t *testing.T) {
	got := sshConfigBlock("127.0.0.1:2222", "sb1", "/d/ssh/known_hosts")
	want := "Host den-sb1\n  HostName 127.0.0.1\n  Port 2222\n  User sb1\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile /d/ssh/known_hosts\n\n"
	if got != want {
		t.Fatalf("block:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(sshConfigBlock("h:1", "x", ""), "UserKnownHostsFile") {
		t.Fatal("block without a known_hosts file names one")
	}
}
