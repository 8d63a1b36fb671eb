package den_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/guest"
	den "github.com/denhq/den/sdk/go"
	"github.com/denhq/den/sdk/go/dentest"
)

// exampleServer stands in for `den up`: a fake server whose sandboxes run
// commands in this process. Real programs use den.FromEnv instead.
func exampleServer() (den.Options, func()) {
	agent, err := guest.New(guest.Config{Env: os.Environ()})
	if err != nil {
		log.Fatal(err)
	}
	srv := dentest.NewServer(dentest.Config{APIKey: "k", Envd: agent.Handler()})
	return den.Options{URL: srv.URL, APIKey: "k"}, func() { srv.Close(); agent.Close() }
}

func Example() {
	opts, stop := exampleServer() // real programs: opts, err := den.FromEnv()
	defer stop()
	ctx := context.Background()

	c, err := den.NewClient(opts)
	if err != nil {
		log.Fatal(err)
	}
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Image: "base"})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Delete(ctx)

	res, err := sb.Run(ctx, "echo hello from $0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s(exit %d)\n", res.Stdout, res.Code)
	// Output:
	// hello from /bin/sh
	// (exit 0)
}

func ExampleSandbox_Exec() {
	opts, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, _ := den.NewClient(opts)
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Delete(ctx)

	st, err := sb.Exec(ctx, den.ExecOptions{
		Cmd:    "tr",
		Args:   []string{"a-z", "A-Z"},
		Stdin:  strings.NewReader("shout\n"),
		Stdout: os.Stdout,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit", st.Code)
	// Output:
	// SHOUT
	// exit 0
}

func ExampleSandbox_WriteFile() {
	opts, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, _ := den.NewClient(opts)
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Delete(ctx)

	dir, _ := os.MkdirTemp("", "den-example-")
	defer os.RemoveAll(dir)
	// The content is streamed: any io.Reader works, an *os.File of any size too.
	if err := sb.WriteFile(ctx, dir+"/notes.txt", strings.NewReader("remember the milk\n")); err != nil {
		log.Fatal(err)
	}
	res, _ := sb.Run(ctx, "cat "+dir+"/notes.txt")
	fmt.Print(string(res.Stdout))
	// Output:
	// remember the milk
}
