"""Putting a policy on a gateway: where it goes (`target`, `place`), checking the artifacts
(`checks`), installing them (`install`: prepare, install, read back, restore), and the broker and
resolver processes (`services`, `runner`, `daemons`)."""
