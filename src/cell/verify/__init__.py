"""Proving the promise with evidence: the probe runner (`prober`) and its DNS client (`dnsquery`)."""
