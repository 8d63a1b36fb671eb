package nodelink

import (
	"bytes"
	"encoding/json"
)

// splitFrame decodes the frames writeFrame makes of a header or an
// answer, {"k":"…","m":"…","r":…} and {"r":…}, without decoding their
// payload: json.Unmarshal would scan the payload (a sandbox's record, say)
// twice to copy it into a json.RawMessage, and its receiver decodes it
// again anyway, which checks it. It reports false for any other shape
// (an error, an escaped string, another writer's spacing), which the
// caller decodes with json.Unmarshal; the payload aliases b.
func splitFrame(b []byte, v any) bool {
	switch v := v.(type) {
	case *header:
		rest, ok := bytes.CutPrefix(b, []byte(`{"k":`))
		if !ok {
			return false
		}
		var k, m string
		if k, rest, ok = plainString(rest); !ok {
			return false
		}
		if rest, ok = bytes.CutPrefix(rest, []byte(`,"m":`)); !ok {
			return false
		}
		if m, rest, ok = plainString(rest); !ok {
			return false
		}
		r, ok := payload(rest)
		if !ok {
			return false
		}
		*v = header{K: k, M: m, R: r}
		return true
	case *answer:
		r, ok := payload(b[min(1, len(b)):])
		if !ok || len(b) == 0 || b[0] != '{' || (len(r) == 0 && len(b) != 2) {
			return false
		}
		*v = answer{R: r}
		return true
	}
	return false
}

// payload is the "r" member that ends an object: rest is `}` (none) or
// `,"r":…}` after earlier members, or `"r":…}` as the first.
func payload(rest []byte) (json.RawMessage, bool) {
	if len(rest) == 1 && rest[0] == '}' {
		return nil, true
	}
	r, ok := bytes.CutPrefix(rest, []byte(`,"r":`))
	if !ok {
		if r, ok = bytes.CutPrefix(rest, []byte(`"r":`)); !ok {
			return nil, false
		}
	}
	if len(r) < 2 || r[len(r)-1] != '}' {
		return nil, false
	}
	return json.RawMessage(r[:len(r)-1]), true
}

// plainString reads a JSON string of plain ASCII (no escapes) at the start
// of b.
func plainString(b []byte) (string, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return string(b[1:i]), b[i+1:], true
		case c == '\\' || c < 0x20 || c >= 0x80: // escapes and non-ASCII: json.Unmarshal's way
			return "", nil, false
		}
	}
	return "", nil, false
}
