"""The store and tree layer: stores, bounded HTTP reads, the tree's keys, the lease, manifests."""
