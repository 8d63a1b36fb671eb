// Package den is the Go client of den, VM/sandbox infrastructure for AI
// agents.
//
// A Client talks to den's control-plane REST API (/v1): it creates, lists
// and deletes sandboxes and manages images (Client.Images: build, pull,
// push, tag, inspect, import, export, remove, prune). A Sandbox handle runs processes
// and reads and writes files inside one sandbox through the server's proxy to
// the sandbox's guest agent ({URL}/v1/sandboxes/{id}/envd), which speaks the
// envd protocol (Connect RPC plus HTTP /files).
//
// Every method that blocks takes a context first and stops when it is
// cancelled. A Client and a Sandbox are safe for concurrent use; the package
// keeps no global state.
//
// Errors returned by the server are *APIError values, which the IsNotFound
// family of helpers classifies; errors from the guest agent are *APIError
// values too, carrying the Connect code (for example "not_found"), and so
// are the error lines that end the streamed answers of Build, Pull and Push.
package den
