"""What the CLI and the hooks run: publish, verify, CDN invalidation."""
