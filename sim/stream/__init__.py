"""The stream (TCP/UDP) side of a node: stream servers and upstream sessions (stream), and
zone_sync, the stream module that replicates keyval and limit_req state between nodes."""
