"""Event hooks: republish when the bucket changes (Lambda, SQS consumer, MinIO webhook)."""
