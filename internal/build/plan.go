package build

// Plan is a build in executable form: global ARGs and stages of typed steps.
// The Dockerfile frontend (Build) produces one from a Dockerfile; other
// frontends, such as E2B's template-build API, construct one directly and
// pass it to BuildPlan.
//
// A Plan is a parse result, not an evaluated one: the words of steps are
// still subject to variable substitution ($VAR, ${VAR:-default}), which the
// executor applies with the stage's environment at the time the step runs,
// exactly where Docker does (ENV, LABEL, ARG, COPY/ADD sources, destination,
// --chown and --chmod, WORKDIR, USER, EXPOSE, STOPSIGNAL; FROM with the
// global ARGs; never RUN, CMD, ENTRYPOINT or SHELL). A frontend that wants
// its words taken literally sets StepInfo.Literal.
//
// For E2B's steps ({type, args, filesHash, force}) a frontend would build:
//
//	FROM image           Stage{Base: image}
//	RUN cmd [user]       &RunStep{Command: []string{cmd}, User: user}
//	COPY src dst [user [mode]]
//	                     &CopyStep{Sources: []string{src}, Dest: dst, Chown: user,
//	                         Chmod: mode, ContentHash: filesHash}
//	ENV k v ...          &EnvStep{Vars: []KeyValue{{k, v}, ...}}
//	WORKDIR p            &WorkdirStep{Path: p}
//	USER u               &UserStep{User: u}
//
// with force in StepInfo.Force, and the context directory holding the
// uploaded files as Options.ContextDir.
type Plan struct {
	// File names the build definition in messages ("Dockerfile"); with
	// StepInfo.Line it prefixes errors ("Dockerfile:7: ...").
	File string
	// Args are the ARGs declared before the first stage. They are in scope
	// for Stage.Base only, unless a stage redeclares them without a value.
	Args []ArgDef
	// Stages are the build stages in order. The result is the stage named
	// Options.Target, or the last one. Stages the result does not depend on
	// are skipped.
	Stages []Stage
	// Ignore holds .dockerignore patterns: matching context paths are not
	// part of the build context.
	Ignore []string
	// Escape is the escape character of variable substitution; 0 means '\\'.
	Escape rune
	// Notes are messages of the frontend (parser warnings), printed at the
	// start of the build log.
	Notes []string
}

// Stage is one FROM and the steps after it.
type Stage struct {
	// Name is the stage's lower-case name ("AS builder"), or "".
	Name string
	// Base is an image reference, "scratch", or the name of an earlier
	// stage. Global ARGs are substituted in it.
	Base string
	// Platform is FROM's --platform; den builds for the host only and
	// ignores it with a note.
	Platform string
	// Line and Text locate the FROM instruction.
	Line int
	Text string
	// Steps are the instructions of the stage, in order.
	Steps []Step
}

// Step is one instruction of a stage: *RunStep, *CopyStep, *EnvStep,
// *ArgStep, *WorkdirStep, *UserStep, *CmdStep, *EntrypointStep, *ShellStep,
// *ExposeStep, *LabelStep, *StopSignalStep or *NoteStep.
type Step interface {
	// Info returns the step's common fields.
	Info() *StepInfo
}

// StepInfo holds what every step has.
type StepInfo struct {
	// Line is the instruction's line in Plan.File; 0 when it has none.
	Line int
	// Text is the instruction as written ("RUN make"), for the log and
	// error messages.
	Text string
	// Force makes a step that produces a layer (RUN, COPY, ADD, WORKDIR)
	// ignore the build cache, like Options.NoCache does for all steps.
	// The steps after it see a new layer and miss the cache as well,
	// unless the forced step produced exactly the cached content.
	Force bool
	// Literal disables variable substitution in the step's words.
	Literal bool
}

// Info implements Step.
func (i *StepInfo) Info() *StepInfo { return i }

// KeyValue is a name and a value (ENV, LABEL).
type KeyValue struct {
	Key, Value string
}

// ArgDef is one name of an ARG instruction.
type ArgDef struct {
	Name string
	// Default is the value after "=", when HasDefault.
	Default    string
	HasDefault bool
}

// InlineFile is a here-document of a RUN or COPY instruction.
type InlineFile struct {
	// Name is the delimiter word ("EOF"); COPY uses it as the file name.
	Name string
	Data string
	// Expand says variables in Data are substituted (COPY only; an
	// unquoted delimiter).
	Expand bool
}

// RunStep is RUN: run a command in a sandbox over the stage's filesystem and
// keep what it changed as a layer.
type RunStep struct {
	StepInfo
	// Command is the command line: with Exec, argv; otherwise a single
	// string run by the stage's SHELL.
	Command []string
	Exec    bool
	// Files are the here-documents of the command (shell form only).
	Files []InlineFile
	// User runs this step as another user than the stage's USER, when set.
	User string
	// Network is RUN --network: "" (the build's), "default" or "none".
	Network string
}

// CopyStep is COPY or ADD: copy files from the build context, another stage
// or an image into the stage's filesystem.
type CopyStep struct {
	StepInfo
	// Add makes it ADD: local tar archives are unpacked and http(s) URLs
	// downloaded.
	Add bool
	// Sources are paths (globs allowed) in the source; with Add, URLs too.
	Sources []string
	// Files are here-documents copied as files named after them.
	Files []InlineFile
	// Dest is the destination, relative to WORKDIR unless absolute; a
	// trailing "/" makes it a directory.
	Dest string
	// From names the source: "" for the build context, an earlier stage's
	// name or index, or an image reference.
	From string
	// Chown is "user[:group]", names resolved in the stage's /etc/passwd
	// and /etc/group.
	Chown string
	// Chmod is an octal mode for the copied files and directories.
	Chmod string
	// Checksum is ADD --checksum ("sha256:<hex>") of a downloaded file.
	Checksum string
	// ContentHash, when set, stands for the sources in the cache key
	// instead of a hash the builder computes by reading them (E2B's
	// filesHash).
	ContentHash string
}

// EnvStep is ENV.
type EnvStep struct {
	StepInfo
	Vars []KeyValue
}

// ArgStep is ARG inside a stage.
type ArgStep struct {
	StepInfo
	Args []ArgDef
}

// WorkdirStep is WORKDIR: set the working directory, creating it.
type WorkdirStep struct {
	StepInfo
	Path string
}

// UserStep is USER.
type UserStep struct {
	StepInfo
	User string
}

// CmdStep is CMD.
type CmdStep struct {
	StepInfo
	// Command is argv with Exec, else a single shell command line.
	Command []string
	Exec    bool
}

// EntrypointStep is ENTRYPOINT.
type EntrypointStep struct {
	StepInfo
	// Command is argv with Exec, else a single shell command line.
	Command []string
	Exec    bool
}

// ShellStep is SHELL.
type ShellStep struct {
	StepInfo
	Shell []string
}

// ExposeStep is EXPOSE.
type ExposeStep struct {
	StepInfo
	// Ports are "port[/proto]" or "from-to[/proto]" words.
	Ports []string
}

// LabelStep is LABEL (and MAINTAINER, as the label "maintainer").
type LabelStep struct {
	StepInfo
	Labels []KeyValue
}

// StopSignalStep is STOPSIGNAL.
type StopSignalStep struct {
	StepInfo
	Signal string
}

// NoteStep is an instruction den accepts but does not apply (HEALTHCHECK,
// VOLUME, ONBUILD); the executor prints Note in the build log.
type NoteStep struct {
	StepInfo
	Note string
}
