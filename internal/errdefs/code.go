package errdefs

// KindOfCode is the kind whose Code is code: what a peer's error becomes
// again after a hop over the wire. An unknown code is Internal.
func KindOfCode(code string) Kind {
	for k, info := range kindInfo {
		if info.code == code {
			return k
		}
	}
	return Internal
}
