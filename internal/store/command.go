package store

import (
	"encoding/json"
	"fmt"
)

// A command is one raft log entry: a two-byte header (format version, command
// type) followed by a JSON body. JSON ignores unknown fields, so an entry
// written by a newer binary with extra fields still replays; a new command
// type gets a new cmdType, never a reused one.
const cmdVersion byte = 1

type cmdType byte

// Command types. Values are persisted: append only.
const (
	cmdCreateSandbox  cmdType = 1
	cmdUpdateSandbox  cmdType = 2
	cmdDeleteSandbox  cmdType = 3
	cmdPutAPIKey      cmdType = 4
	cmdDeleteAPIKey   cmdType = 5
	cmdCreateSnapshot cmdType = 6
	cmdDeleteSnapshot cmdType = 7
	cmdPutPool        cmdType = 8
	cmdDeletePool     cmdType = 9
	cmdPutTenant      cmdType = 10
	cmdDeleteTenant   cmdType = 11
	cmdPutSSHKey      cmdType = 12
	cmdDeleteSSHKey   cmdType = 13
	// Cluster membership: join tokens and node records (jointokens.go,
	// nodes.go).
	cmdPutJoinToken    cmdType = 14
	cmdDeleteJoinToken cmdType = 15
	cmdJoinNode        cmdType = 16
	cmdNodeUp          cmdType = 17
	cmdNodeDown        cmdType = 18
	cmdSetNodeDraining cmdType = 19
	cmdDeleteNode      cmdType = 20
	// cmdBatch carries several commands in one entry (batch.go).
	cmdBatch cmdType = 21
	// cmdPutClusterCA records the cluster CA (clusterca.go).
	cmdPutClusterCA cmdType = 22
	// cmdJoinServer counts a use of a server join token (jointokens.go).
	cmdJoinServer cmdType = 23
	// cmdRotateClusterCA moves a rotation of the cluster CA a step, or
	// records a server's acknowledgement of one (clusterca.go).
	cmdRotateClusterCA cmdType = 24
)

func (t cmdType) String() string {
	switch t {
	case cmdCreateSandbox:
		return "create_sandbox"
	case cmdUpdateSandbox:
		return "update_sandbox"
	case cmdDeleteSandbox:
		return "delete_sandbox"
	case cmdPutAPIKey:
		return "put_api_key"
	case cmdDeleteAPIKey:
		return "delete_api_key"
	case cmdCreateSnapshot:
		return "create_snapshot"
	case cmdDeleteSnapshot:
		return "delete_snapshot"
	case cmdPutPool:
		return "put_pool"
	case cmdDeletePool:
		return "delete_pool"
	case cmdPutTenant:
		return "put_tenant"
	case cmdDeleteTenant:
		return "delete_tenant"
	case cmdPutSSHKey:
		return "put_ssh_key"
	case cmdDeleteSSHKey:
		return "delete_ssh_key"
	case cmdPutJoinToken:
		return "put_join_token"
	case cmdDeleteJoinToken:
		return "delete_join_token"
	case cmdJoinNode:
		return "join_node"
	case cmdNodeUp:
		return "node_up"
	case cmdNodeDown:
		return "node_down"
	case cmdSetNodeDraining:
		return "set_node_draining"
	case cmdDeleteNode:
		return "delete_node"
	case cmdBatch:
		return "batch"
	case cmdPutClusterCA:
		return "put_cluster_ca"
	case cmdJoinServer:
		return "join_server"
	case cmdRotateClusterCA:
		return "rotate_cluster_ca"
	}
	return fmt.Sprintf("cmd(%d)", byte(t))
}

// sandboxCmd is the body of create and update. For update, Sandbox.ModifyIndex
// is the index the writer read (compare-and-set).
type sandboxCmd struct {
	Sandbox *Sandbox `json:"sandbox"`
}

// idCmd is the body of the delete commands.
type idCmd struct {
	ID string `json:"id"`
}

// apiKeyCmd is the body of put_api_key.
type apiKeyCmd struct {
	Key *APIKey `json:"key"`
}

// encodeCmd returns the log entry for a command.
func encodeCmd(t cmdType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return append([]byte{cmdVersion, byte(t)}, b...), nil
}

// decodeCmd splits a log entry into its type and JSON body.
func decodeCmd(data []byte) (cmdType, []byte, error) {
	if len(data) < 2 {
		return 0, nil, fmt.Errorf("decode command: short entry (%d bytes)", len(data))
	}
	if data[0] != cmdVersion {
		return 0, nil, fmt.Errorf("decode command: unknown format version %d", data[0])
	}
	return cmdType(data[1]), data[2:], nil
}
