package e2b

import (
	"math"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/store"
)

// E2B's sandbox states.
const (
	stateRunning = "running"
	statePaused  = "paused"
)

// newSandbox is E2B's NewSandbox request. AutoPause makes the timeout
// suspend the sandbox instead of removing it; AllowInternetAccess and
// Network are its egress policy. Fields den does not model (mcp, iam,
// volumeMounts, autoResume) are ignored: den always resumes a paused
// sandbox that sandbox traffic names.
type newSandbox struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int64            `json:"timeout"`
	AutoPause           bool              `json:"autoPause"`
	Secure              *bool             `json:"secure"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
	Network             *networkConfig    `json:"network"`
	Metadata            map[string]string `json:"metadata"`
	EnvVars             map[string]string `json:"envVars"`
}

// networkConfig is E2B's SandboxNetworkConfig: egress allow and deny
// lists (addresses, CIDRs, domains), allow winning over deny; "0.0.0.0/0"
// in denyOut shuts everything allowOut does not name. AllowPublicTraffic
// true makes every port's URL public (den's ports are private by
// default: they need the access token).
type networkConfig struct {
	AllowOut           []string `json:"allowOut"`
	DenyOut            []string `json:"denyOut"`
	AllowPublicTraffic *bool    `json:"allowPublicTraffic"`
}

// allTraffic is E2B's ALL_TRAFFIC rule.
const allTraffic = "0.0.0.0/0"

// timeoutBody is the body of connect and timeout requests.
type timeoutBody struct {
	Timeout *int64 `json:"timeout"`
}

// refreshBody is the body of POST /sandboxes/{id}/refreshes.
type refreshBody struct {
	Duration *int64 `json:"duration"`
}

// sandbox is E2B's Sandbox: the answer to create and connect.
type sandbox struct {
	TemplateID         string  `json:"templateID"`
	SandboxID          string  `json:"sandboxID"`
	ClientID           string  `json:"clientID"`
	Alias              string  `json:"alias,omitempty"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken,omitempty"`
	TrafficAccessToken *string `json:"trafficAccessToken"`
	Domain             *string `json:"domain"`
}

// sandboxDetail is E2B's SandboxDetail (GET /sandboxes/{id}); its fields
// are a superset of ListedSandbox's, so lists use it too.
type sandboxDetail struct {
	TemplateID      string            `json:"templateID"`
	Alias           string            `json:"alias,omitempty"`
	SandboxID       string            `json:"sandboxID"`
	ClientID        string            `json:"clientID"`
	StartedAt       time.Time         `json:"startedAt"`
	EndAt           time.Time         `json:"endAt"`
	EnvdVersion     string            `json:"envdVersion"`
	EnvdAccessToken string            `json:"envdAccessToken,omitempty"`
	Domain          *string           `json:"domain,omitempty"`
	CPUCount        int64             `json:"cpuCount"`
	MemoryMB        int64             `json:"memoryMB"`
	DiskSizeMB      int64             `json:"diskSizeMB"`
	Metadata        map[string]string `json:"metadata"`
	State           string            `json:"state"`
}

// sandboxMetric is E2B's SandboxMetric.
type sandboxMetric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUCount      int64     `json:"cpuCount"`
	CPUUsedPct    float64   `json:"cpuUsedPct"`
	MemUsed       uint64    `json:"memUsed"`
	MemTotal      uint64    `json:"memTotal"`
	MemCache      uint64    `json:"memCache"`
	DiskUsed      uint64    `json:"diskUsed"`
	DiskTotal     uint64    `json:"diskTotal"`
}

// sandboxesWithMetrics is E2B's SandboxesWithMetrics.
type sandboxesWithMetrics struct {
	Sandboxes map[string]sandboxMetric `json:"sandboxes"`
}

// e2bState is the E2B state of a den state.
func e2bState(s string) string {
	if isPaused(s) {
		return statePaused
	}
	return stateRunning
}

// denStates are the den states an E2B state filter selects.
func denStates(s string) []string {
	if s == statePaused {
		return []string{rest.StateSuspended, rest.StateSuspending, rest.StateResuming}
	}
	return []string{rest.StateRunning}
}

func cpuCount(cpus float64) int64 { return int64(math.Ceil(cpus)) }

func (a *api) domain() *string {
	if a.cfg.Domain == "" {
		return nil
	}
	d := a.cfg.Domain
	return &d
}

func (a *api) toSandbox(sb *store.Sandbox) sandbox {
	id, alias := a.templateOf(sb.Image)
	return sandbox{
		TemplateID: id, SandboxID: sb.ID, ClientID: sb.Node, Alias: alias,
		EnvdVersion: EnvdVersion, EnvdAccessToken: sb.AccessToken, Domain: a.domain(),
	}
}

// templateOf is the E2B template ID and alias of a sandbox's den image:
// its template's, or the image name for both.
func (a *api) templateOf(image string) (id, alias string) {
	if a.cfg.Templates != nil {
		if id, alias := a.cfg.Templates.templateOf(image); id != "" {
			return id, alias
		}
	}
	return image, image
}

// endAt is when the sandbox expires; one without a timeout reports the
// longest timeout den allows, as E2B's field is required.
func endAt(sb *store.Sandbox) time.Time {
	if !sb.ExpiresAt.IsZero() {
		return sb.ExpiresAt
	}
	return sb.StartedAt.Add(rest.MaxTimeoutSeconds * time.Second)
}

func (a *api) toDetail(sb *store.Sandbox) sandboxDetail {
	md := sb.Metadata
	if md == nil {
		md = map[string]string{}
	}
	id, alias := a.templateOf(sb.Image)
	return sandboxDetail{
		TemplateID: id, Alias: alias, SandboxID: sb.ID, ClientID: sb.Node,
		StartedAt: sb.StartedAt, EndAt: endAt(sb), EnvdVersion: EnvdVersion,
		EnvdAccessToken: sb.AccessToken, Domain: a.domain(),
		CPUCount: cpuCount(sb.CPUs), MemoryMB: sb.MemoryMB, DiskSizeMB: sb.DiskMB,
		Metadata: md, State: e2bState(sb.State),
	}
}
