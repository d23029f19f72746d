"""What is stored beside the log: snapshots of aggregate state, and content-addressed blobs."""
