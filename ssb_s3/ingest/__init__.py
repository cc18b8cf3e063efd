"""build-product: artifact checks, one-pass upload of a version, the distrobuilder runner."""
