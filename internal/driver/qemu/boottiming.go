package qemu

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/denhq/den/internal/guest/vminit"
)

// BootTiming is where the time of a VM's boot went, from QEMU's launch to
// the agent's first answer:
//   - QEMUStart: launch to the QMP socket (QEMU set its devices up), on the
//     host's clock;
//   - Firmware: from there to the kernel's clock starting (firmware, the
//     kernel and initramfs loaded and decompressed): the host's time of
//     init's first console line less the guest uptime it prints;
//   - Kernel: the kernel's start to init's first line (guest uptime);
//   - Init: to init's exec of the agent (modules, root disk, switch root),
//     guest uptime;
//   - Agent: from init's last line to the agent's first answer over the
//     channel, on the host's clock.
//
// The host sees console lines within bootWatchPoll.
type BootTiming struct {
	QEMUStart time.Duration `json:"qemu_start_ns"`
	Firmware  time.Duration `json:"firmware_ns"`
	Kernel    time.Duration `json:"kernel_ns"`
	Init      time.Duration `json:"init_ns"`
	Agent     time.Duration `json:"agent_ns"`
	Total     time.Duration `json:"total_ns"`
}

// bootWatch polls a booting VM's directory for the QMP socket and init's
// console lines.
type bootWatch struct {
	dir      string
	launched time.Time
	stop     chan struct{}
	done     chan struct{}

	mu              sync.Mutex
	qmpAt           time.Time
	initAt, readyAt time.Time // when the host saw init's lines
	initUp, readyUp float64   // the guest uptimes they print
}

// bootWatchPoll is how often the watch looks.
const bootWatchPoll = 2 * time.Millisecond

var uptimeRE = regexp.MustCompile(`uptime=([0-9.]+)`)

func watchBoot(dir string, launched time.Time) *bootWatch {
	w := &bootWatch{dir: dir, launched: launched, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *bootWatch) run() {
	defer close(w.done)
	tick := time.NewTicker(bootWatchPoll)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		if w.qmpAt.IsZero() {
			if _, err := os.Stat(filepath.Join(w.dir, "qmp.sock")); err == nil {
				w.qmpAt = time.Now()
			}
		}
		if w.readyAt.IsZero() {
			console, _ := os.ReadFile(filepath.Join(w.dir, "console.log"))
			if w.initAt.IsZero() {
				if w.initUp = markerUptime(console, vminit.StartMarker); w.initUp > 0 {
					w.initAt = time.Now()
				}
			}
			if w.readyUp = markerUptime(console, vminit.ReadyMarker); w.readyUp > 0 {
				w.readyAt = time.Now()
			}
		}
		w.mu.Unlock()
	}
}

// markerUptime is the uptime on the console line that starts with marker.
func markerUptime(console []byte, marker string) float64 {
	re := regexp.MustCompile(regexp.QuoteMeta(marker) + `[^\n]*\n`)
	line := re.Find(console)
	if line == nil {
		return 0
	}
	m := uptimeRE.FindSubmatch(line)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// end stops the watch once the agent answered and returns the timing.
func (w *bootWatch) end() BootTiming {
	total := time.Since(w.launched)
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	t := BootTiming{Total: total}
	if w.qmpAt.IsZero() || w.initAt.IsZero() || w.readyAt.IsZero() {
		return t // not seen: a console the watch could not read
	}
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	t.QEMUStart = w.qmpAt.Sub(w.launched)
	t.Kernel = sec(w.initUp)
	t.Firmware = w.initAt.Sub(w.qmpAt) - t.Kernel
	t.Init = sec(w.readyUp - w.initUp)
	t.Agent = total - w.readyAt.Sub(w.launched)
	return t
}

// abandon stops the watch without a result (the boot failed or restarts).
func (w *bootWatch) abandon() {
	close(w.stop)
	<-w.done
}
