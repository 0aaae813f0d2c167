"""The egress verifier: the DNS sinkhole counter, the drop poller (see docs/verify.md)."""
