package driver

// Pooler is an optional interface: the driver keeps declared numbers of
// started, never-used sandboxes ("spares") ready, so that a Create (or a
// Suspender.Clone) whose spec has a declared pool's shape claims one
// instead of booting. A claimed sandbox is indistinguishable from a new
// one of its spec: nobody has used it, and the spec's ID, Env, Hostname
// and User are applied at the claim. Spares are the driver's own: Lister
// does not list them, and Close (or the next driver instance) destroys
// them.
type Pooler interface {
	// SetPools replaces the declared pools. Spares of pools no longer
	// declared (or of lower sizes) are destroyed; missing ones are booted
	// in the background. It never blocks on a boot.
	SetPools(pools []Pool)
	// PoolStatus reports every declared pool, in SetPools order.
	PoolStatus() []PoolStatus
}

// Pool is the declaration of one warm pool.
type Pool struct {
	// Key names the pool; it is stable across SetPools calls.
	Key string `json:"key"`
	// Spec is the spares' spec. ID, Env and Hostname are ignored (a claim
	// applies the creating spec's).
	Spec Spec `json:"spec"`
	// From, when set, is a checkpoint directory as for Suspender.Clone:
	// the spares are clones of it, and a Clone from From claims one.
	From string `json:"from,omitempty"`
	// Size is how many spares to keep ready.
	Size int `json:"size"`
}

// PoolStatus is what a driver reports of one declared pool.
type PoolStatus struct {
	Key string `json:"key"`
	// Ready is the number of spares ready to be claimed, at most Size.
	Ready int `json:"ready"`
	Size  int `json:"size"`
	// Waiting says why the pool is not filling, when it is not: the last
	// boot failed (it is retried after a back-off) or the host lacks the
	// memory for another spare. Empty while it fills or is full.
	Waiting string `json:"waiting,omitempty"`
}
