"""The MQTT bridge to the hub: rendering, control, classification and the monitor.

    render      mosquitto.conf, conf.d/bridge.conf, acl from the policy (pure)
    broker      start, reload or restart mosquitto through a `Runner` seam
    classify    the topic classifier (a trie), shared by `cell explain topic` and the monitor
    table       the policy as a tagged table (`cell bridge policy`)
    logparse    mosquitto's log lines as events (pure)
    monitor     counts, link state and unexpected publishes (pure core, log replay, snapshot)
    mqttwire    the few MQTT 3.1.1 packets the observer speaks (pure)
    observer    the running monitor: observer on the bus, log follower, snapshot writer
    status      the monitor's status models, importable without paho or Textual

Imports only `policies` (import-linter checks it).
"""
