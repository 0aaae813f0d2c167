"""The fleet view at the hub: every Cell's sovereignty, worst first (`cell fleet`).

`model` is pure (messages in, rows out); `client` is the thin MQTT client of the hub's broker;
`expect` reads the `--expect` file. It reads `cell.status` only.
"""
