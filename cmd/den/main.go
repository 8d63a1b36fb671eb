// Command den is the den CLI, and `den up`: the whole service in one process.
package main

import (
	"os"

	"github.com/denhq/den/internal/cli"
	"github.com/denhq/den/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cli.Version = version
	root := cli.NewRoot(daemon.Command(version), daemon.ServerCommand(version), daemon.AgentCommand(version))
	os.Exit(cli.Execute(root))
}
