"""Incident response: `cell incident` runs the four-step search of the operator document
(bridge, gitops, health, egress; plus DNS phone-home counts and drift) over a window and writes
an evidence pack that a third party checks offline with `sha256sum`, `ssh-keygen` and `age`.

    sources   where the Cell keeps what the search reads (state dir, logs, ring, store)
    bridge    step 1: unexpected publishes and `never` topics in the broker logs
    gitops    step 2: applies, confirms, rollbacks, refusals; the ledger's window and chain
    commits   the rendered configuration of every commit applied in the window, re-rendered
    health    step 3: segregation probe runs and their failures
    egress    step 4: the capture window, its WAN destinations, coverage; DNS and drift
    report    the report (JSON and Markdown), pure
    pack      writing the pack: SHA256SUMS, signature, VERIFY.txt, deterministic tar, age
    check     `cell incident verify PACK`
"""
