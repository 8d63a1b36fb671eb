package build

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/denhq/den/internal/errdefs"
)

// ParseDockerfile parses a Dockerfile into a Plan. name names the file in
// messages ("Dockerfile:7: unknown instruction: FOO"). Errors are
// errdefs.InvalidArgument *StepError values. Plan.Ignore is left empty: the
// .dockerignore file is the caller's (Build reads it).
func ParseDockerfile(name string, data []byte) (*Plan, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, parseError(name, err)
	}
	p := &Plan{File: name, Escape: res.EscapeToken}
	for _, w := range res.Warnings {
		p.Notes = append(p.Notes, w.Short)
	}
	for _, n := range res.AST.Children {
		if err := p.add(n); err != nil {
			return nil, &StepError{File: name, Line: n.StartLine, Instruction: nodeText(n),
				Err: classify(err, errdefs.InvalidArgument)}
		}
	}
	if len(p.Stages) == 0 {
		return nil, errdefs.New(errdefs.InvalidArgument, "%s: dockerfile contains no stages to build", name)
	}
	return p, nil
}

// parseError turns an error of the buildkit parser into one naming the line.
func parseError(name string, err error) error {
	var loc *parser.ErrorLocation
	line := 0
	if errors.As(err, &loc) && len(loc.Locations) > 0 && len(loc.Locations[0]) > 0 {
		line = loc.Locations[0][0].Start.Line
	}
	return &StepError{File: name, Line: line, Err: classify(err, errdefs.InvalidArgument)}
}

func nodeText(n *parser.Node) string { return strings.TrimSpace(n.Original) }

// add appends the instruction n to the plan.
func (p *Plan) add(n *parser.Node) error {
	cmd := strings.ToLower(n.Value)
	if cmd == "from" {
		return p.addStage(n)
	}
	conv, ok := instructions[cmd]
	if !ok {
		return fmt.Errorf("unknown instruction: %s", n.Value)
	}
	if len(p.Stages) == 0 {
		if cmd != "arg" {
			return errors.New("no build stage in current context")
		}
		step, err := conv(n, StepInfo{Line: n.StartLine, Text: nodeText(n)})
		if err != nil {
			return err
		}
		p.Args = append(p.Args, step.(*ArgStep).Args...)
		return nil
	}
	step, err := conv(n, StepInfo{Line: n.StartLine, Text: nodeText(n)})
	if err != nil {
		return err
	}
	st := &p.Stages[len(p.Stages)-1]
	st.Steps = append(st.Steps, step)
	return nil
}

var validStageName = regexp.MustCompile("^[a-z][a-z0-9-_.]*$")

// addStage starts a stage for the FROM instruction n.
func (p *Plan) addStage(n *parser.Node) error {
	fl, err := parseFlags(n.Flags, map[string]flagKind{"platform": stringFlag})
	if err != nil {
		return err
	}
	args := nodeArgs(n)
	st := Stage{Platform: fl["platform"], Line: n.StartLine, Text: nodeText(n)}
	switch {
	case len(args) == 3 && strings.EqualFold(args[1], "as"):
		st.Name = strings.ToLower(args[2])
		if !validStageName.MatchString(st.Name) {
			return fmt.Errorf("invalid name for build stage: %q, name can't start with a number or contain symbols", args[2])
		}
		for _, other := range p.Stages {
			if other.Name == st.Name {
				return fmt.Errorf("duplicate stage name %q", st.Name)
			}
		}
	case len(args) != 1:
		return errors.New("FROM requires either one or three arguments")
	}
	st.Base = args[0]
	p.Stages = append(p.Stages, st)
	return nil
}

// nodeArgs flattens the argument nodes of an instruction.
func nodeArgs(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

// commandLine returns the command of RUN, CMD and ENTRYPOINT: argv in exec
// (JSON) form, else the whole line as one string.
func commandLine(n *parser.Node) ([]string, bool) {
	args := nodeArgs(n)
	if n.Attributes["json"] {
		return args, true
	}
	if len(args) == 0 {
		return nil, false
	}
	return []string{strings.Join(args, " ")}, false
}

// converter turns one instruction into a step.
type converter func(n *parser.Node, info StepInfo) (Step, error)

// instructions maps each instruction but FROM to its converter.
var instructions map[string]converter

func init() {
	instructions = map[string]converter{
		"run":         convertRun,
		"copy":        convertCopy,
		"add":         convertCopy,
		"env":         convertEnv,
		"label":       convertLabel,
		"maintainer":  convertMaintainer,
		"arg":         convertArg,
		"workdir":     convertWorkdir,
		"user":        convertUser,
		"cmd":         convertCmd,
		"entrypoint":  convertEntrypoint,
		"shell":       convertShell,
		"expose":      convertExpose,
		"stopsignal":  convertStopSignal,
		"healthcheck": convertNote("HEALTHCHECK is ignored: den does not run health checks"),
		"volume":      convertNote("VOLUME is ignored: den sandboxes have no volumes"),
		"onbuild":     convertNote("ONBUILD is ignored: den does not record build triggers"),
	}
}

func convertRun(n *parser.Node, info StepInfo) (Step, error) {
	fl, err := parseFlags(n.Flags, map[string]flagKind{"mount": stringFlag, "network": stringFlag, "security": stringFlag})
	if err != nil {
		return nil, err
	}
	if _, ok := fl["mount"]; ok {
		return nil, errdefs.New(errdefs.Unsupported, "RUN --mount is not supported")
	}
	if _, ok := fl["security"]; ok {
		return nil, errdefs.New(errdefs.Unsupported, "RUN --security is not supported")
	}
	cmd, exec := commandLine(n)
	s := &RunStep{StepInfo: info, Command: cmd, Exec: exec, Network: fl["network"]}
	for _, h := range n.Heredocs {
		data := h.Content
		if h.Chomp {
			data = parser.ChompHeredocContent(data)
		}
		s.Files = append(s.Files, InlineFile{Name: h.Name, Data: data})
	}
	return s, nil
}

func convertCopy(n *parser.Node, info StepInfo) (Step, error) {
	add := strings.EqualFold(n.Value, "add")
	accepted := map[string]flagKind{"chown": stringFlag, "chmod": stringFlag, "link": boolFlag}
	if add {
		accepted["checksum"] = stringFlag
	} else {
		accepted["from"] = stringFlag
	}
	fl, err := parseFlags(n.Flags, accepted)
	if err != nil {
		return nil, err
	}
	args := nodeArgs(n)
	instr := strings.ToUpper(n.Value)
	if len(args) < 2 {
		return nil, fmt.Errorf("%s requires at least two arguments, but only one was provided. Destination could not be determined", instr)
	}
	s := &CopyStep{StepInfo: info, Add: add, Dest: args[len(args)-1], From: fl["from"],
		Chown: fl["chown"], Chmod: fl["chmod"], Checksum: fl["checksum"]}
	if parser.MustParseHeredoc(s.Dest) != nil {
		return nil, fmt.Errorf("%s cannot accept a heredoc as a destination", instr)
	}
	docs := map[string]parser.Heredoc{}
	for _, h := range n.Heredocs {
		docs[h.Name] = h
	}
	for _, src := range args[:len(args)-1] {
		h := parser.MustParseHeredoc(src)
		if h == nil {
			s.Sources = append(s.Sources, src)
			continue
		}
		data := docs[h.Name].Content
		if h.Chomp {
			data = parser.ChompHeredocContent(data)
		}
		s.Files = append(s.Files, InlineFile{Name: h.Name, Data: data, Expand: h.Expand})
	}
	return s, nil
}

// keyValues reads the name/value pairs of ENV and LABEL.
func keyValues(n *parser.Node, instr string) ([]KeyValue, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return nil, err
	}
	args := nodeArgs(n)
	if len(args) == 0 {
		return nil, fmt.Errorf("%s requires at least one argument", instr)
	}
	var out []KeyValue
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "" {
			return nil, fmt.Errorf("%s names can not be blank", instr)
		}
		out = append(out, KeyValue{Key: args[i], Value: args[i+1]})
	}
	return out, nil
}

func convertEnv(n *parser.Node, info StepInfo) (Step, error) {
	kv, err := keyValues(n, "ENV")
	if err != nil {
		return nil, err
	}
	return &EnvStep{StepInfo: info, Vars: kv}, nil
}

func convertLabel(n *parser.Node, info StepInfo) (Step, error) {
	kv, err := keyValues(n, "LABEL")
	if err != nil {
		return nil, err
	}
	return &LabelStep{StepInfo: info, Labels: kv}, nil
}

// convertMaintainer records MAINTAINER as the label "maintainer", taken
// literally as Docker does.
func convertMaintainer(n *parser.Node, info StepInfo) (Step, error) {
	v, err := oneArg(n, "MAINTAINER")
	if err != nil {
		return nil, err
	}
	info.Literal = true
	return &LabelStep{StepInfo: info, Labels: []KeyValue{{Key: "maintainer", Value: v}}}, nil
}

func convertArg(n *parser.Node, info StepInfo) (Step, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return nil, err
	}
	args := nodeArgs(n)
	if len(args) == 0 {
		return nil, errors.New("ARG requires at least one argument")
	}
	s := &ArgStep{StepInfo: info}
	for _, a := range args {
		name, def, has := strings.Cut(a, "=")
		if name == "" {
			return nil, errors.New("ARG names can not be blank")
		}
		s.Args = append(s.Args, ArgDef{Name: name, Default: def, HasDefault: has})
	}
	return s, nil
}

// oneArg returns the single argument of WORKDIR, USER, STOPSIGNAL and
// MAINTAINER.
func oneArg(n *parser.Node, instr string) (string, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return "", err
	}
	args := nodeArgs(n)
	if len(args) != 1 {
		return "", fmt.Errorf("%s requires exactly one argument", instr)
	}
	return args[0], nil
}

func convertWorkdir(n *parser.Node, info StepInfo) (Step, error) {
	v, err := oneArg(n, "WORKDIR")
	if err != nil {
		return nil, err
	}
	return &WorkdirStep{StepInfo: info, Path: v}, nil
}

func convertUser(n *parser.Node, info StepInfo) (Step, error) {
	v, err := oneArg(n, "USER")
	if err != nil {
		return nil, err
	}
	return &UserStep{StepInfo: info, User: v}, nil
}

func convertStopSignal(n *parser.Node, info StepInfo) (Step, error) {
	v, err := oneArg(n, "STOPSIGNAL")
	if err != nil {
		return nil, err
	}
	return &StopSignalStep{StepInfo: info, Signal: v}, nil
}

func convertCmd(n *parser.Node, info StepInfo) (Step, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return nil, err
	}
	cmd, exec := commandLine(n)
	return &CmdStep{StepInfo: info, Command: cmd, Exec: exec}, nil
}

func convertEntrypoint(n *parser.Node, info StepInfo) (Step, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return nil, err
	}
	cmd, exec := commandLine(n)
	return &EntrypointStep{StepInfo: info, Command: cmd, Exec: exec}, nil
}

func convertShell(n *parser.Node, info StepInfo) (Step, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return nil, err
	}
	args := nodeArgs(n)
	switch {
	case len(args) == 0:
		return nil, errors.New("SHELL requires at least one argument")
	case !n.Attributes["json"]:
		return nil, errors.New("SHELL requires the arguments to be in JSON form")
	}
	return &ShellStep{StepInfo: info, Shell: args}, nil
}

func convertExpose(n *parser.Node, info StepInfo) (Step, error) {
	if _, err := parseFlags(n.Flags, nil); err != nil {
		return nil, err
	}
	args := nodeArgs(n)
	if len(args) == 0 {
		return nil, errors.New("EXPOSE requires at least one argument")
	}
	return &ExposeStep{StepInfo: info, Ports: args}, nil
}

// convertNote accepts an instruction den does not apply; its flags and
// arguments are not checked.
func convertNote(note string) converter {
	return func(n *parser.Node, info StepInfo) (Step, error) {
		return &NoteStep{StepInfo: info, Note: note}, nil
	}
}
