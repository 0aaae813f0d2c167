"""How the console is pointed at a Cell: which bus, which login, which state directory. The CLI
fills it in (`cell console --lab` finds everything itself); the app and the tests take it as is.
No Textual here: the CLI imports this module without loading the TUI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REFRESH: Final = 5.0
"""Seconds between re-reads of the Cell's records (the ledger, the store) while nothing on the
bus says they changed."""


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    """TLS with this CA (an operator's laptop over the network); None: plain MQTT (loopback)."""
    certfile: str | None = None
    keyfile: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" + (" (TLS)" if self.cafile else "")


@dataclass(frozen=True)
class ConsoleConfig:
    broker: BrokerConfig | None = None
    """The status bus; None with `recorded`."""
    recorded: str | None = None
    """A file of recorded bus messages (JSON lines `{"topic", "payload"}`) instead of a broker."""
    state_dir: str | None = None
    """The Cell's state directory (journal, ledger, store); None: the bus alone."""
    repo: str | None = None
    """The site-config repo, for the policy when the state has no stored applied commit."""
    refresh: float = REFRESH
