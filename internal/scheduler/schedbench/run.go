package schedbench

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/scheduler"
)

// Config is one run of the benchmark at one cluster size.
type Config struct {
	Nodes     int
	Fill      float64 // occupancy of the binding resource before churn
	ChurnOps  int     // measured place+delete pairs
	Bursts    int     // bursts of BurstSize placements, each timed
	BurstSize int
	BatchSize int // decisions per commit (the raft entry to be)
	NaiveOps  int // churn pairs for the linear-scan floor; 0 skips it
	Seed      uint64
}

// DefaultConfig is the run: 85% full, 200k churn pairs.
func DefaultConfig(nodes int) Config {
	return Config{Nodes: nodes, Fill: 0.85, ChurnOps: 200_000, Bursts: 20, BurstSize: 1000, BatchSize: 1000, NaiveOps: 2000, Seed: 1}
}

// Latency is a distribution of decision times in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p99_9_us"`
	Max  float64 `json:"max_us"`
}

// Churn is the measured steady-state phase.
type Churn struct {
	Ops        int     `json:"ops"`
	Placements int     `json:"placements"`
	Failures   int     `json:"failures"`
	Releases   int     `json:"releases"`
	Commits    int     `json:"commits"`
	WallSec    float64 `json:"wall_s"`
	// PlacementsPerSec is placements over the loop's wall time, deletes,
	// commits and the harness included. DecisionsPerSec counts every
	// decision (place, failed place, delete) over the same wall time.
	// PlaceCallsPerSec is Place calls over the time spent inside Place.
	PlacementsPerSec float64 `json:"placements_per_s"`
	DecisionsPerSec  float64 `json:"decisions_per_s"`
	PlaceCallsPerSec float64 `json:"place_calls_per_s"`
	Latency          Latency `json:"latency"`
	// Where the wall time went: inside Place, Release and Commit, and in
	// garbage collection pauses (stop-the-world only; concurrent marking
	// shows up inside the calls it slows).
	PlaceSec   float64 `json:"place_s"`
	ReleaseSec float64 `json:"release_s"`
	CommitSec  float64 `json:"commit_s"`
	GCPauseSec float64 `json:"gc_pause_s"`
	GCs        uint32  `json:"gcs"`
	// HeapMB is the live heap when the phase started.
	HeapMB float64 `json:"heap_mb"`
}

// Result is the report of one Config.
type Result struct {
	Nodes          int     `json:"nodes"`
	Pools          int     `json:"pools"`
	PrefillUtil    float64 `json:"prefill_utilisation"`
	Live           int     `json:"live_placements"`
	PrefillSec     float64 `json:"prefill_s"`
	Churn          Churn   `json:"churn"`
	Burst1000P50Ms float64 `json:"burst_1000_p50_ms"`
	Burst1000MaxMs float64 `json:"burst_1000_max_ms"`
	// FillBestFit and FillSpread are the utilisation of the binding
	// resource of the shared pool at the first failed placement, filling
	// an empty cluster with the unconstrained shape mix.
	FillBestFit float64 `json:"fill_to_first_failure_best_fit"`
	FillSpread  float64 `json:"fill_to_first_failure_spread"`
	// Headroom is how many of the largest shape (8 vCPU/32 GiB) still fit
	// at the pre-fill occupancy, best-fit vs spread (worst-fit) filled.
	HeadroomBestFit int     `json:"largest_shape_headroom_best_fit"`
	HeadroomSpread  int     `json:"largest_shape_headroom_spread"`
	HeadroomRatio   float64 `json:"headroom_ratio"`
	Naive           *Churn  `json:"naive_linear_scan,omitempty"`
	// SpeedupVsNaive is the ratio of Place calls per second.
	SpeedupVsNaive float64 `json:"place_speedup_vs_naive,omitempty"`
	// InvariantChecks is how many times the invariants were checked (all
	// passed, or the run fails).
	InvariantChecks int `json:"invariant_checks"`
}

// engine is what the harness drives: the scheduler or the naive floor.
type engine struct {
	place   func(scheduler.Request) (scheduler.Placement, error)
	release func(pool, id string) error
	commit  func()
}

func schedEngine(s *scheduler.Scheduler) engine {
	return engine{place: s.Place, release: s.Release, commit: func() { s.Commit() }}
}

// Run runs every phase of cfg and checks the invariants after each.
func Run(cfg Config) (Result, error) {
	r := Result{Nodes: cfg.Nodes}
	c := NewCluster(cfg.Nodes, cfg.Seed)
	r.Pools = len(c.Pools) + 1
	s, err := c.Build(scheduler.BestFit)
	if err != nil {
		return r, err
	}
	check := func(phase string) error {
		r.InvariantChecks++
		if err := s.Working().Check(); err != nil {
			return fmt.Errorf("invariants after %s: %w", phase, err)
		}
		return nil
	}
	start := time.Now()
	live, err := prefill(s, c, newMix(cfg.Seed, "p"), cfg.Fill)
	if err != nil {
		return r, err
	}
	r.PrefillSec = time.Since(start).Seconds()
	r.PrefillUtil, r.Live = utilisation(s.Working().Snapshot, ""), live.n
	r.HeadroomBestFit = headroom(s.Working().Snapshot)
	if err := check("pre-fill"); err != nil {
		return r, err
	}
	if r.HeadroomSpread, err = spreadHeadroom(c, cfg); err != nil {
		return r, err
	}
	r.HeadroomRatio = float64(r.HeadroomBestFit) / float64(max(1, r.HeadroomSpread))
	if cfg.NaiveOps > 0 {
		// The floor starts from the same pre-fill state; run it first so
		// that the measured churn does not carry a second state on its heap.
		r.Naive = runNaive(c, s.Working(), cfg)
	}
	r.Churn = churn(schedEngine(s), live, newMix(cfg.Seed+1, "c"), cfg.ChurnOps, cfg.BatchSize)
	if err := check("churn"); err != nil {
		return r, err
	}
	r.Burst1000P50Ms, r.Burst1000MaxMs, err = bursts(s, live, newMix(cfg.Seed+2, "b"), cfg)
	if err != nil {
		return r, err
	}
	if err := check("bursts"); err != nil {
		return r, err
	}
	for _, alg := range []scheduler.Algorithm{scheduler.BestFit, scheduler.Spread} {
		f, err := fillToFirstFailure(c, alg, cfg.Seed)
		if err != nil {
			return r, err
		}
		r.InvariantChecks++
		if alg == scheduler.BestFit {
			r.FillBestFit = f
		} else {
			r.FillSpread = f
		}
	}
	if r.Naive != nil {
		r.SpeedupVsNaive = r.Churn.PlaceCallsPerSec / r.Naive.PlaceCallsPerSec
	}
	return r, nil
}

// liveSet is the live placements per pool, for deletes at random.
type liveSet struct {
	byPool map[string][]string
	n      int
}

func (l *liveSet) add(p scheduler.Placement) {
	l.byPool[p.Pool] = append(l.byPool[p.Pool], p.SandboxID)
	l.n++
}

// take removes a random live sandbox of pool, if any.
func (l *liveSet) take(pool string, i uint64) (string, bool) {
	ids := l.byPool[pool]
	if len(ids) == 0 {
		return "", false
	}
	k := int(i % uint64(len(ids)))
	id := ids[k]
	ids[k] = ids[len(ids)-1]
	l.byPool[pool] = ids[:len(ids)-1]
	l.n--
	return id, true
}

func (l *liveSet) clone() *liveSet {
	c := &liveSet{byPool: map[string][]string{}, n: l.n}
	for k, v := range l.byPool {
		c.byPool[k] = slices.Clone(v)
	}
	return c
}

// homePool is the first pool a request is routed to.
func homePool(req scheduler.Request) string {
	if req.Tenant == "shared-tenant" {
		return scheduler.SharedPool
	}
	return req.Tenant
}

// prefill fills the shared pool, then each dedicated pool with its
// tenant's requests, to the target utilisation of the binding resource.
func prefill(s *scheduler.Scheduler, c Cluster, m *mix, fill float64) (*liveSet, error) {
	live := &liveSet{byPool: map[string][]string{}}
	caps := map[string]scheduler.Resources{}
	for _, n := range c.Nodes {
		p := n.Pool
		if p == "" {
			p = scheduler.SharedPool
		}
		caps[p] = caps[p].Add(n.Capacity)
	}
	used := map[string]scheduler.Resources{}
	fillPool := func(pool string, tenant int) error {
		// A constrained class may fill before the pool does: give up only
		// after many failures in a row.
		for fails := 0; bindingShare(used[pool], caps[pool]) < fill && fails < 1000; {
			p, err := s.Place(m.request(tenant))
			if err != nil {
				if !errdefs.Is(err, errdefs.ResourceExhausted) {
					return err
				}
				fails++
				continue
			}
			fails = 0
			used[p.Pool] = used[p.Pool].Add(p.Size)
			live.add(p)
			if live.n%1000 == 0 {
				s.Commit()
			}
		}
		return nil
	}
	if err := fillPool(scheduler.SharedPool, -2); err != nil {
		return nil, err
	}
	for i, p := range c.Pools {
		if err := fillPool(p.Name, i); err != nil {
			return nil, err
		}
	}
	s.Commit()
	return live, nil
}

// bindingShare is the utilisation of the binding (most used) dimension.
func bindingShare(used, capacity scheduler.Resources) float64 {
	if capacity.CPUMillis == 0 {
		return 1
	}
	return max(float64(used.CPUMillis)/float64(capacity.CPUMillis), float64(used.MemoryMB)/float64(capacity.MemoryMB),
		float64(used.DiskMB)/float64(capacity.DiskMB))
}

// utilisation is bindingShare over one pool, or all when pool is "".
func utilisation(snap *scheduler.Snapshot, pool string) float64 {
	var used, capacity scheduler.Resources
	for _, p := range snap.Pools() {
		if pool == "" || p == pool {
			u, c := snap.Usage(p)
			used, capacity = used.Add(u), capacity.Add(c)
		}
	}
	return bindingShare(used, capacity)
}

// headroom counts the largest shapes that still fit on up nodes.
func headroom(snap *scheduler.Snapshot) int {
	big := Shapes[len(Shapes)-1]
	n := 0
	for _, p := range snap.Pools() {
		snap.EachNode(p, func(ni scheduler.NodeInfo) bool {
			f := ni.Free()
			n += int(min(f.CPUMillis/big.CPUMillis, f.MemoryMB/big.MemoryMB, f.DiskMB/big.DiskMB))
			return true
		})
	}
	return n
}

func spreadHeadroom(c Cluster, cfg Config) (int, error) {
	s, err := c.Build(scheduler.Spread)
	if err != nil {
		return 0, err
	}
	if _, err := prefill(s, c, newMix(cfg.Seed, "p"), cfg.Fill); err != nil {
		return 0, err
	}
	snap := s.Working()
	if err := snap.Check(); err != nil {
		return 0, fmt.Errorf("invariants after spread pre-fill: %w", err)
	}
	return headroom(snap.Snapshot), nil
}

// churn deletes a random live sandbox of the request's home pool and
// places the request, ops times, on one core, timing every placement.
func churn(e engine, live *liveSet, m *mix, ops, batch int) Churn {
	reqs := make([]scheduler.Request, ops)
	for i := range reqs {
		reqs[i] = m.request(-1)
	}
	picks := make([]uint64, ops)
	for i := range picks {
		picks[i] = m.rng.Uint64()
	}
	lat := make([]time.Duration, 0, ops)
	var ch Churn
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcs, pause := ms.NumGC, ms.PauseTotalNs
	ch.HeapMB = float64(ms.HeapAlloc) / (1 << 20)
	var inPlace, inRelease, inCommit time.Duration
	start := time.Now()
	pending := 0
	for i, req := range reqs {
		if id, ok := live.take(homePool(req), picks[i]); ok {
			t0 := time.Now()
			if err := e.release(homePool(req), id); err != nil {
				panic(fmt.Sprintf("release %s: %v", id, err)) // the harness lost track: a bug
			}
			inRelease += time.Since(t0)
			ch.Releases++
			pending++
		}
		t0 := time.Now()
		p, err := e.place(req)
		d := time.Since(t0)
		inPlace += d
		lat = append(lat, d)
		if err != nil {
			ch.Failures++
		} else {
			ch.Placements++
			live.add(p)
			pending++
		}
		if pending >= batch {
			t0 := time.Now()
			e.commit()
			inCommit += time.Since(t0)
			ch.Commits++
			pending = 0
		}
	}
	ch.WallSec = time.Since(start).Seconds()
	runtime.ReadMemStats(&ms)
	ch.GCs = ms.NumGC - gcs
	ch.GCPauseSec = float64(ms.PauseTotalNs-pause) / 1e9
	ch.PlaceSec, ch.ReleaseSec, ch.CommitSec = inPlace.Seconds(), inRelease.Seconds(), inCommit.Seconds()
	ch.Ops = ops
	ch.PlacementsPerSec = float64(ch.Placements) / ch.WallSec
	ch.DecisionsPerSec = float64(ops+ch.Releases) / ch.WallSec
	ch.PlaceCallsPerSec = float64(ops) / inPlace.Seconds()
	ch.Latency = distribution(lat)
	return ch
}

func distribution(lat []time.Duration) Latency {
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := min(len(lat)-1, int(math.Ceil(q*float64(len(lat))))-1)
		return float64(lat[max(0, i)]) / 1e3
	}
	return Latency{P50: at(0.50), P99: at(0.99), P999: at(0.999), Max: float64(lat[len(lat)-1]) / 1e3}
}

// bursts times cfg.Bursts bursts of cfg.BurstSize placements decided and
// committed at once (one batch), releasing each burst afterwards.
func bursts(s *scheduler.Scheduler, live *liveSet, m *mix, cfg Config) (p50, maxMs float64, err error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	// As before the churn: start clean, so the bursts do not pay for the
	// garbage of the invariant check and the churn's generated requests.
	// Collections the bursts cause themselves are measured.
	runtime.GC()
	var times []time.Duration
	for range cfg.Bursts {
		reqs := make([]scheduler.Request, cfg.BurstSize)
		for i := range reqs {
			reqs[i] = m.request(-1)
		}
		placed := make([]scheduler.Placement, 0, len(reqs))
		start := time.Now()
		for _, req := range reqs {
			if p, err := s.Place(req); err == nil {
				placed = append(placed, p)
			}
		}
		s.Commit()
		times = append(times, time.Since(start))
		for _, p := range placed {
			if err := s.Release(p.Pool, p.SandboxID); err != nil {
				return 0, 0, err
			}
		}
		s.Commit()
	}
	slices.Sort(times)
	return float64(times[len(times)/2]) / 1e6, float64(times[len(times)-1]) / 1e6, nil
}

// fillToFirstFailure fills an empty cluster with the unconstrained shape
// mix of the shared tenant until a placement fails, and returns the shared
// pool's utilisation of the binding resource then.
func fillToFirstFailure(c Cluster, alg scheduler.Algorithm, seed uint64) (float64, error) {
	s, err := c.Build(alg)
	if err != nil {
		return 0, err
	}
	m := newMix(seed+3, "f")
	m.unconstrained = true
	for i := 1; ; i++ {
		_, err := s.Place(m.request(-2))
		if errdefs.Is(err, errdefs.ResourceExhausted) {
			break
		}
		if err != nil {
			return 0, err
		}
		if i%1000 == 0 {
			s.Commit()
		}
	}
	snap := s.Working()
	if err := snap.Check(); err != nil {
		return 0, fmt.Errorf("invariants after fill: %w", err)
	}
	return utilisation(snap.Snapshot, scheduler.SharedPool), nil
}

func runNaive(c Cluster, base *scheduler.Working, cfg Config) *Churn {
	n := newNaive(c, base)
	cons := map[*scheduler.Constraints]*naiveConstraints{nil: {}}
	e := engine{
		place: func(req scheduler.Request) (scheduler.Placement, error) {
			k, ok := cons[req.Constraints]
			if !ok {
				k = &naiveConstraints{runtime: req.Constraints.Runtime(), labels: req.Constraints.Labels()}
				cons[req.Constraints] = k
			}
			return n.place(req, k)
		},
		release: n.release,
		commit:  func() {},
	}
	// The pre-fill live set was consumed by the scheduler's churn; rebuild
	// it from the pre-fill snapshot so the floor starts from the same state.
	l := &liveSet{byPool: map[string][]string{}}
	for _, p := range base.Pools() {
		base.EachPlacement(p, func(pl scheduler.Placement) bool { l.add(pl); return true })
	}
	ch := churn(e, l, newMix(cfg.Seed+1, "c"), cfg.NaiveOps, cfg.BatchSize)
	return &ch
}

// GOGC returns the GC percent in effect.
func GOGC() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}
