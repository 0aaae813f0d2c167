"""`cell console`: the operator's Textual view of the Cell. It shows state; it decides nothing.

Every judgement comes from the daemon's status documents (`cell.status`) and the Cell's records
(`cell.store`); the console only reads them. Layout, from the data to the screen:

    sources   the status bus over MQTT (`BusSource`), or a recorded file (`FileSource`)
    model     `BusState`: the latest status, availability, checks and events (pure)
    records   `Records`: journal, ledger, DNS, drops, probes, bridge policy (blocking reads)
    view      `View`: both, at one instant; `content.*` turn it into each panel's rows (pure)
    app       the Textual app (`make_app`), one widget per module, styles in `app.tcss`

Only this package imports Textual; `import cell.cli` never does (tests/test_console_imports.py).
"""
