"""The fleet TUI (`cell fleet` on a terminal): rows worst first, `/` filters, Enter opens a site's
latest status document. Self-contained for now; it shares nothing with the site console yet."""
