"""The pure core: what a tree is made of and what to do with it. No store, no boto3, no clock."""
