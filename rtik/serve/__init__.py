"""The daemon: configuration, ingest queues, receiving threads, outputs, control, security, stats, recording."""
