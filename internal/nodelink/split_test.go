package nodelink

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// splitFrame reads what writeFrame writes exactly as json.Unmarshal does,
// and leaves every other shape to it.
func TestSplitFrame(t *testing.T) {
	payloads := []json.RawMessage{nil, json.RawMessage(`null`), json.RawMessage(`{}`), json.RawMessage(`{"id":"a","x":"}\"r\":{"}`),
		json.RawMessage(`[1,{"a":[2]}]`), json.RawMessage(`"s"`), json.RawMessage(`{"record":{"env":{"K":"v}"}}}`)}
	for _, r := range payloads {
		for _, h := range []header{{K: "call", M: "node.start_new", R: r}, {K: "stream", M: "node.guest", R: r}} {
			b, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			var fast, slow header
			if !splitFrame(b, &fast) {
				t.Fatalf("splitFrame refused writeFrame's header %s", b)
			}
			if err := json.Unmarshal(b, &slow); err != nil {
				t.Fatal(err)
			}
			if fast.K != slow.K || fast.M != slow.M || !bytes.Equal(fast.R, slow.R) {
				t.Fatalf("%s: split %+v, decoded %+v", b, fast, slow)
			}
		}
		b, err := json.Marshal(answer{R: r})
		if err != nil {
			t.Fatal(err)
		}
		var fast, slow answer
		if !splitFrame(b, &fast) {
			t.Fatalf("splitFrame refused writeFrame's answer %s", b)
		}
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) && !(len(fast.R) == 0 && len(slow.R) == 0 && fast.E == nil && slow.E == nil) {
			t.Fatalf("%s: split %+v, decoded %+v", b, fast, slow)
		}
	}
	// Errors, escapes and foreign spacing go to json.Unmarshal.
	for _, b := range []string{
		`{"e":{"code":"not_found","message":"gone"}}`,
		`{"k":"call","m":"a\"b","r":{}}`,
		`{ "k":"call","m":"x"}`,
		`{"m":"x","k":"call"}`,
		`{"k":"call","m":"x","r":}`,
		`{"k":"call","m":"x"`,
		``,
		`}`,
	} {
		var h header
		var a answer
		if splitFrame([]byte(b), &h) {
			t.Errorf("splitFrame took %q as a header", b)
		}
		if b != "" && b[0] == '{' && bytes.Contains([]byte(b), []byte(`"e"`)) && splitFrame([]byte(b), &a) {
			t.Errorf("splitFrame took the error answer %q", b)
		}
	}
}

// FuzzSplitFrame: any bytes split or not, never panic; a split header
// names the same call json.Unmarshal would.
func FuzzSplitFrame(f *testing.F) {
	f.Add([]byte(`{"k":"call","m":"node.info","r":{}}`))
	f.Add([]byte(`{"r":{"a":1}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h, slow header
		if splitFrame(b, &h) && json.Unmarshal(b, &slow) == nil && (h.K != slow.K || h.M != slow.M) {
			t.Fatalf("%q: split %q %q, decoded %q %q", b, h.K, h.M, slow.K, slow.M)
		}
		var a answer
		splitFrame(b, &a)
	})
}
