package rest

import "time"

// Image is an image in the node's store.
type Image struct {
	Name      string    `json:"name"`
	ID        string    `json:"id"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	// Digest is the manifest digest the image was pulled or pushed as;
	// empty for an image that never met a registry.
	Digest string `json:"digest,omitempty"`
}

// ImageList lists images.
type ImageList struct {
	Images []Image `json:"images"`
}

// ImageDetails is an image with its layers, configuration and history
// (GET /v1/images/{ref}).
type ImageDetails struct {
	Image
	// Layers are bottom first.
	Layers  []ImageLayer   `json:"layers"`
	Config  ImageConfig    `json:"config"`
	History []ImageHistory `json:"history,omitempty"`
}

// ImageLayer is one layer of an image.
type ImageLayer struct {
	// DiffID is the digest of the uncompressed layer tar.
	DiffID string `json:"diff_id"`
	// Digest, Size and MediaType describe the layer's blob as a registry
	// stores it (usually gzip-compressed); empty and 0 for an image that an
	// older den recorded without blobs.
	Digest    string `json:"digest,omitempty"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type,omitempty"`
	// UnpackedSize is the size of the uncompressed layer tar.
	UnpackedSize int64 `json:"unpacked_size"`
}

// ImageConfig is the runtime configuration of an image.
type ImageConfig struct {
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	User         string            `json:"user,omitempty"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Shell        []string          `json:"shell,omitempty"`
	StopSignal   string            `json:"stop_signal,omitempty"`
}

// ImageHistory is one entry of an image's history, bottom first.
type ImageHistory struct {
	Created    time.Time `json:"created,omitzero"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// PullImageRequest pulls an image from a registry (POST /v1/images/pull).
type PullImageRequest struct {
	// Ref is the image reference, e.g. "docker.io/library/alpine:3.20".
	// The image is stored under this name.
	Ref string `json:"ref"`
	// Insecure allows plain HTTP to the registry (loopback and private
	// addresses use it anyway).
	Insecure bool   `json:"insecure,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Platform picks an image of an index, "os/arch[/variant]"; empty
	// means the server's own.
	Platform string `json:"platform,omitempty"`
}

// PushImageRequest pushes a stored image to a registry (POST /v1/images/push).
type PushImageRequest struct {
	// Image is the stored image's name or ID.
	Image string `json:"image"`
	// Dest is the registry reference to push to.
	Dest     string `json:"dest"`
	Insecure bool   `json:"insecure,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// TagImageRequest gives an image another name (POST /v1/images/{ref}/tag).
type TagImageRequest struct {
	Name string `json:"name"`
}

// PruneImagesResult says what POST /v1/images/prune deleted.
type PruneImagesResult struct {
	Layers int   `json:"layers"`
	Blobs  int   `json:"blobs"`
	Bytes  int64 `json:"bytes"`
}

// Image progress phases.
const (
	PhaseResolving   = "resolving"
	PhaseDownloading = "downloading"
	PhaseUnpacking   = "unpacking"
	PhaseUploading   = "uploading"
	PhaseExists      = "exists"
)

// ImageProgress reports the advance of a pull or push.
type ImageProgress struct {
	// Phase is one of the Phase constants.
	Phase string `json:"phase"`
	// Current and Total count bytes; Total is 0 when unknown.
	Current int64 `json:"current"`
	Total   int64 `json:"total"`
	// Detail is the layer digest the report is about, if any.
	Detail string `json:"detail,omitempty"`
}

// BuildResult is the outcome of a successful build.
type BuildResult struct {
	ImageID string   `json:"image_id"`
	Tags    []string `json:"tags"`
	// Steps counts the Dockerfile steps built, CachedSteps those taken
	// from the build cache and RunSteps the RUN steps executed.
	Steps       int   `json:"steps"`
	CachedSteps int   `json:"cached_steps"`
	RunSteps    int   `json:"run_steps"`
	DurationMS  int64 `json:"duration_ms"`
}

// ImageEvent is one line of the NDJSON answer of pull, push and build.
// Exactly one field is set. Progress and Log lines come first; the last
// line holds Image (pull), Digest (push), Result (build) or Error.
type ImageEvent struct {
	Progress *ImageProgress `json:"progress,omitempty"`
	// Log is one line of build output, without its newline.
	Log    *string      `json:"log,omitempty"`
	Image  *Image       `json:"image,omitempty"`
	Digest string       `json:"digest,omitempty"`
	Result *BuildResult `json:"result,omitempty"`
	Error  *Error       `json:"error,omitempty"`
}

// Image export formats (GET /v1/images/{ref}/export?format=).
const (
	ExportDockerArchive = "docker-archive"
	ExportOCI           = "oci"
)

// NDJSONContentType is the media type of the pull, push and build streams.
const NDJSONContentType = "application/x-ndjson"
