//go:build !(linux && (amd64 || arm64))

package forkexec

import "os"

const fastBuilt = false

func startFast(string, []string, *Attr) (*os.Process, error) { return nil, errUnsupported }
