package build

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/denhq/den/internal/errdefs"
)

// StepError is the failure of one instruction. Its message names the file
// and line when known: `Dockerfile:7: COPY nosuch /x: "nosuch": no such file
// or directory in the build context`. Its errdefs kind is Err's.
type StepError struct {
	// File and Line locate the instruction; Line is 0 when unknown.
	File string
	Line int
	// Instruction is the instruction as written, or "" for errors that
	// concern the file rather than one instruction.
	Instruction string
	Err         error
}

// Error formats the error as "file:line: instruction: cause".
func (e *StepError) Error() string {
	var b strings.Builder
	if e.File != "" && e.Line > 0 {
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	} else if e.File != "" {
		fmt.Fprintf(&b, "%s: ", e.File)
	}
	if e.Instruction != "" {
		b.WriteString(shorten(e.Instruction))
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// shorten keeps long instructions (a RUN over many lines) readable in
// messages.
func shorten(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

// ExitError reports a RUN command that exited with a non-zero status. It is
// wrapped as errdefs.InvalidArgument: the build's input is at fault.
type ExitError struct {
	// Args is the command's argv.
	Args []string
	Code int
}

// Error formats the error as Docker does.
func (e *ExitError) Error() string {
	return fmt.Sprintf("process %q did not complete successfully: exit code %d", strings.Join(e.Args, " "), e.Code)
}

// invalid returns an InvalidArgument error with a formatted message.
func invalid(format string, args ...any) error {
	return errdefs.New(errdefs.InvalidArgument, format, args...)
}

// classify gives err the kind k unless it already has one.
func classify(err error, k errdefs.Kind) error {
	var e *errdefs.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return errdefs.Wrap(k, err, "")
}

// userPathError classifies the errors of resolving a path of the build's
// filesystem (a component that is a file, a link loop) as the build's
// fault; others keep their kind.
func userPathError(err error) error {
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) || errors.Is(err, fs.ErrNotExist) {
		return classify(err, errdefs.InvalidArgument)
	}
	return err
}
