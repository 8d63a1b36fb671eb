package rest

import "time"

// Tenant is a team sharing a den, as the API shows it. Only admin keys
// create, change or delete tenants; a tenant's own keys read it.
type Tenant struct {
	Name      string    `json:"name"`
	Quota     Quota     `json:"quota"`
	RateLimit RateLimit `json:"rate_limit"`
	Placement Placement `json:"placement"`
	// Usage is what the tenant holds now, in the quota's terms.
	Usage     Quota     `json:"usage"`
	CreatedAt time.Time `json:"created_at"`
}

// Quota bounds what a tenant holds at once; 0 is no limit. Sandboxes
// counts those not terminated or failed (suspended ones too); VCPUs and
// MemoryMB sum the sizes of those not terminated, failed or suspended;
// Snapshots counts snapshot objects. Going over is HTTP 429
// resource_exhausted.
type Quota struct {
	Sandboxes int     `json:"sandboxes"`
	VCPUs     float64 `json:"vcpus"`
	MemoryMB  int64   `json:"memory_mb"`
	Snapshots int     `json:"snapshots"`
}

// RateLimit bounds a tenant's API requests (all its keys together): on
// average PerSecond a second, in bursts of Burst (0: PerSecond rounded
// up). PerSecond 0 is no limit. A request over it is HTTP 429 with
// Retry-After.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// CreateTenantRequest creates a tenant; omitted limits are none.
type CreateTenantRequest struct {
	Name      string     `json:"name"`
	Quota     *Quota     `json:"quota,omitempty"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	Placement *Placement `json:"placement,omitempty"`
}

// Placement is where a tenant's sandboxes run in a cluster: NodePools
// are its dedicated node pools, tried in order (their nodes run no other
// tenant's sandboxes; a pool has one owner); with OverflowToShared the
// shared nodes are tried when none of them has room. No NodePools: the
// shared nodes.
type Placement struct {
	NodePools        []string `json:"node_pools"`
	OverflowToShared bool     `json:"overflow_to_shared"`
}

// UpdateTenantRequest replaces a tenant's quota, rate limit, or both; an
// omitted one is kept.
type UpdateTenantRequest struct {
	Quota     *Quota     `json:"quota,omitempty"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	Placement *Placement `json:"placement,omitempty"`
}

// APIKey is an API key as listings show it: never its secret, which only
// the response that created it holds.
type APIKey struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Tenant string `json:"tenant"`
	// Admin keys also manage node-wide things: images, tenants, keys of
	// every tenant.
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	// Current is true for the key the listing request was made with.
	Current bool `json:"current,omitempty"`
}

// CreateAPIKeyRequest creates a key. Tenant defaults to the caller's;
// only admin keys name another tenant or create admin keys.
type CreateAPIKeyRequest struct {
	Name   string `json:"name,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
	// Format is "den" (den_ and 48 hex digits, the default) or "e2b"
	// (e2b_ and 40 hex digits, which the e2b SDKs accept as
	// E2B_API_KEY).
	Format string `json:"format,omitempty"`
}

// KeyFormatDen and KeyFormatE2B are the formats of a key's secret.
const (
	KeyFormatDen = "den"
	KeyFormatE2B = "e2b"
)

// CreateAPIKeyResponse is a new key with its secret, shown this once.
type CreateAPIKeyResponse struct {
	Key    APIKey `json:"key"`
	Secret string `json:"secret"`
}
