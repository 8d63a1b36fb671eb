package sandboxnet

// NFTTransactions is how many nftables transactions m has run.
func NFTTransactions(m *Manager) int64 { return m.nftTxs.Load() }
