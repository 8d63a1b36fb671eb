package rest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// Signed port URLs: a URL of a private port with the query parameters
// PortSignatureParam and PortExpiresParam is served without a token until
// it expires. The traffic listener then sets a cookie with the same
// signature, so that the page's own requests (scripts, images,
// WebSockets) pass too. The key is the sandbox's access token: whoever
// holds the token can sign, and a new token voids every signature.
const (
	PortSignatureParam = "den_signature"
	PortExpiresParam   = "den_expires"
	PortCookie         = "den_port_auth"
)

// PortSignature is the signature of port of sandbox id until expires
// (Unix seconds): "v1_" and the unpadded base64url HMAC-SHA256, keyed by
// the access token, of "port:<id>:<port>:<expires>".
func PortSignature(token, id string, port int, expires int64) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("port:" + id + ":" + strconv.Itoa(port) + ":" + strconv.FormatInt(expires, 10)))
	return "v1_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
