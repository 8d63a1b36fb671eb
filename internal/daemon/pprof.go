package daemon

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves Go's profiler on $DEN_PPROF_LISTEN (host:port), when
// set: for measuring den's own processes (see docs/benchmarks.md). Keep it
// on loopback.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("DEN_PPROF_LISTEN")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("profiler not started", "addr", addr, "error", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	log.Info("profiler listening", "addr", ln.Addr().String())
	go http.Serve(ln, mux)
}
