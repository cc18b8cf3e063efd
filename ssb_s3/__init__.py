"""ssb_s3: publish LXD/Incus images to S3-compatible storage as a simplestreams tree."""

__version__ = "0.1.0"
