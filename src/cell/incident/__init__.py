"""Incident response: `cell incident` runs the four-step search of the operator document
(bridge, gitops, health, egress; plus DNS phone-home counts and drift) over a window and writes
an evidence pack that a third party checks offline with `sha256sum`, `ssh-keygen` and `age`.

    sources     where the Cell keeps what the search reads, and the window
    bridge      step 1: unexpected publishes and `never` topics in the broker logs
    gitops      step 2: applies, confirms, rollbacks, refusals; the window's part of the ledger
    commits     the configuration of every commit applied in the window, re-rendered
    health      step 3: segregation probe runs and their failures
    egress      step 4: the capture window, its WAN destinations, its coverage
    context     the DNS phone-home counts and the drift events of the window
    search      every step in turn, and the files of the pack; `write_incident`
    model       the typed records (`Step`, `Report`); report: report.json and report.md (pure)
    pack        SHA256SUMS, its signature, the deterministic tar, age; the bus manifest
    verifytext  VERIFY.txt (pure)
    check       `cell incident verify PACK`
"""
