"""Proving the promise with evidence: the probe runner (`prober`) and its DNS client
(`dnsquery`); where the bridge runs and what it does (`bridgeplace`); the DNS sinkhole counter
(`dnslog`, `sinkhole`, `site`) and the drop poller (`drops`); the WAN capture ring (`capture`,
`ring`, `pruner`, `coverage`, `labcapture`) and incident windows cut from it (`pcapwindow`,
`pcapread`, `destinations`). See docs/verify.md."""
