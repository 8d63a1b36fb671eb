package build

import (
	"fmt"
	"strings"
)

// flagKind is how an instruction flag takes its value.
type flagKind int

const (
	stringFlag flagKind = iota
	boolFlag
)

// flags are the parsed --name[=value] flags of one instruction.
type flags map[string]string

// parseFlags parses raw ("--from=builder", "--link") against the flags the
// instruction accepts, with BuildKit's messages.
func parseFlags(raw []string, accepted map[string]flagKind) (flags, error) {
	out := flags{}
	for _, arg := range raw {
		if !strings.HasPrefix(arg, "--") {
			return nil, fmt.Errorf("arg should start with -- : %s", arg)
		}
		if arg == "--" {
			break
		}
		name, value, hasValue := strings.Cut(arg[2:], "=")
		kind, ok := accepted[name]
		if !ok {
			return nil, fmt.Errorf("unknown flag: %s", name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate flag specified: %s", name)
		}
		switch {
		case kind == boolFlag && hasValue && value == "":
			return nil, fmt.Errorf("missing a value on flag: %s", name)
		case kind == boolFlag:
			switch strings.ToLower(value) {
			case "", "true":
				value = "true"
			case "false":
			default:
				return nil, fmt.Errorf("expecting boolean value for flag %s, not: %s", name, value)
			}
		case !hasValue:
			return nil, fmt.Errorf("missing a value on flag: %s", name)
		}
		out[name] = value
	}
	return out, nil
}
