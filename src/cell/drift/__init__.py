"""Live state against applied state: what is expected (`expected`), the one-shot comparison
(`compare`), paths around the firewall (`bypass`), findings, and the event-driven watcher
(`watch`, `inotify`, `report`)."""
