// Package envlist manipulates environments as "K=V" lists, the form
// processes and OCI specs take. It is stdlib-only so den-guest can use it.
package envlist

import (
	"maps"
	"slices"
	"strings"
)

// Merge returns base with extra applied: an existing key is replaced in
// place, new keys are appended in sorted order (a stable result). base is
// not modified.
func Merge(base []string, extra map[string]string) []string {
	env := slices.Clone(base)
	index := make(map[string]int, len(env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		kv := k + "=" + extra[k]
		if i, ok := index[k]; ok {
			env[i] = kv
			continue
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	return env
}

// Has reports whether env sets key.
func Has(env []string, key string) bool {
	return slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
}
