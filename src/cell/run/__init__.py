"""The daemon, `cell run`: services under a supervisor, the verdict, the status bus, metrics.

- `service`: the `Service` protocol and the `Context` a service runs with (stop, beat, report);
- `supervisor`: runs each service on a thread of its own; a crash is reported and restarted with
  backoff, a hang is noticed by its deadline;
- `board`: where services put their checks, events and figures (thread-safe);
- `assemble`: the six checks and the status document from the board (pure);
- `publisher`: the status bus on the site's mosquitto (paho, user `cell`, retained, QoS 1);
- `notify`: sd_notify; `metrics`: Prometheus;
- `site`: what the daemon runs against (the applied commit, its policy, the gateway);
- `daemon`: the main loop.
"""
