package den

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// guestDoer carries requests to a sandbox's guest agent through the server's
// proxy. It implements connect.HTTPClient.
//
// It adds the API key (for the server) and, when a user is chosen, the
// envd user selection "Authorization: Basic base64(user:)" (for the guest;
// the proxy passes it through). It also turns a non-200 JSON error of the
// server (for example "sandbox not found") on a streaming call into an
// *APIError, because Connect streaming clients only see the HTTP status.
type guestDoer struct {
	hc     *http.Client
	apiKey string
	user   string
}

// Do implements connect.HTTPClient.
func (d *guestDoer) Do(req *http.Request) (*http.Response, error) {
	d.decorate(req)
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, err
	}
	streaming := strings.HasPrefix(req.Header.Get("Content-Type"), "application/connect+")
	if streaming && resp.StatusCode != http.StatusOK &&
		strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		defer resp.Body.Close()
		return nil, errorFromResponse(resp)
	}
	return resp, nil
}

// decorate sets the headers every guest request carries.
func (d *guestDoer) decorate(req *http.Request) {
	if d.apiKey != "" {
		req.Header.Set("X-API-Key", d.apiKey)
	}
	if d.user != "" {
		req.Header.Set("Authorization", basicUser(d.user))
	}
}

// basicUser is the envd user selection header value for user.
func basicUser(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"))
}
