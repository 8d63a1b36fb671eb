package e2b

import (
	"encoding/json"
	"time"
)

// templateBuildRequest is E2B's TemplateBuildRequestV3 (POST /v3/templates).
// minFreeDiskMb and teamID are ignored.
type templateBuildRequest struct {
	Name string `json:"name"`
	// Alias is the deprecated spelling of Name.
	Alias    string   `json:"alias"`
	Tags     []string `json:"tags"`
	CPUCount *int     `json:"cpuCount"`
	MemoryMB *int     `json:"memoryMB"`
}

// templateRequestResponse is E2B's TemplateRequestResponseV3.
type templateRequestResponse struct {
	TemplateID string   `json:"templateID"`
	BuildID    string   `json:"buildID"`
	Public     bool     `json:"public"`
	Names      []string `json:"names"`
	Tags       []string `json:"tags"`
	Aliases    []string `json:"aliases"`
}

// templateBuildFileUpload is E2B's TemplateBuildFileUpload.
type templateBuildFileUpload struct {
	Present bool   `json:"present"`
	URL     string `json:"url,omitempty"`
}

// templateBuildStart is E2B's TemplateBuildStartV2 (POST
// /v2/templates/{id}/builds/{buildID}).
type templateBuildStart struct {
	FromImage         string          `json:"fromImage"`
	FromTemplate      string          `json:"fromTemplate"`
	FromImageRegistry json.RawMessage `json:"fromImageRegistry"`
	Force             bool            `json:"force"`
	Steps             []templateStep  `json:"steps"`
	StartCmd          string          `json:"startCmd"`
	ReadyCmd          string          `json:"readyCmd"`
}

// templateStep is E2B's TemplateStep. The SDKs also send forceUpload,
// resolveSymlinks and gzip, which concern only the upload.
type templateStep struct {
	Type      string   `json:"type"`
	Args      []string `json:"args"`
	FilesHash string   `json:"filesHash"`
	Force     bool     `json:"force"`
}

// Log levels of E2B's LogLevel, least severe first.
var logLevels = []string{"debug", "info", "warn", "error"}

// buildLogEntry is E2B's BuildLogEntry.
type buildLogEntry struct {
	Timestamp time.Time `json:"timestamp"`
	Level     string    `json:"level"`
	Message   string    `json:"message"`
	Step      string    `json:"step,omitempty"`
}

// buildStatusReason is E2B's BuildStatusReason.
type buildStatusReason struct {
	Message    string          `json:"message"`
	Step       string          `json:"step,omitempty"`
	LogEntries []buildLogEntry `json:"logEntries"`
}

// templateBuildInfo is E2B's TemplateBuildInfo (GET .../status).
type templateBuildInfo struct {
	Logs       []string           `json:"logs"`
	LogEntries []buildLogEntry    `json:"logEntries"`
	TemplateID string             `json:"templateID"`
	BuildID    string             `json:"buildID"`
	Status     string             `json:"status"`
	Reason     *buildStatusReason `json:"reason,omitempty"`
}

// templateAliasResponse is E2B's TemplateAliasResponse.
type templateAliasResponse struct {
	TemplateID string `json:"templateID"`
	Public     bool   `json:"public"`
}

// assignTagsRequest is E2B's AssignTemplateTagsRequest.
type assignTagsRequest struct {
	// Target is "name:tag", the build to tag.
	Target string   `json:"target"`
	Tags   []string `json:"tags"`
}

// assignedTags is E2B's AssignedTemplateTags.
type assignedTags struct {
	Tags    []string `json:"tags"`
	BuildID string   `json:"buildID"`
}

// deleteTagsRequest is E2B's DeleteTemplateTagsRequest.
type deleteTagsRequest struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// templateTag is E2B's TemplateTag.
type templateTag struct {
	Tag       string    `json:"tag"`
	BuildID   string    `json:"buildID"`
	CreatedAt time.Time `json:"createdAt"`
}

// templateListed is E2B's Template (GET /templates). den keeps no usage
// counts, so spawnCount is 0 and lastSpawnedAt null.
type templateListed struct {
	TemplateID    string     `json:"templateID"`
	BuildID       string     `json:"buildID"`
	CPUCount      int        `json:"cpuCount"`
	MemoryMB      int        `json:"memoryMB"`
	DiskSizeMB    int        `json:"diskSizeMB"`
	Public        bool       `json:"public"`
	Aliases       []string   `json:"aliases"`
	Names         []string   `json:"names"`
	CreatedAt     time.Time  `json:"createdAt"`
	UpdatedAt     time.Time  `json:"updatedAt"`
	CreatedBy     *struct{}  `json:"createdBy"`
	LastSpawnedAt *time.Time `json:"lastSpawnedAt"`
	SpawnCount    int64      `json:"spawnCount"`
	BuildCount    int        `json:"buildCount"`
	EnvdVersion   string     `json:"envdVersion"`
	BuildStatus   string     `json:"buildStatus"`
}
