"""The console as plain text: the banner and every panel, as the screen shows them. For
`cell console --once` (scripts, a quick look over ssh) and the golden files."""

from __future__ import annotations

from console.banner import BannerState, banner_line, banner_state
from console.content import PANELS
from console.view import View


def view_banner(view: View) -> BannerState:
    bus = view.bus
    return banner_state(bus.status, bus.availability, view.now, link=bus.link)


def render_text(view: View, width: int = 100, panels: tuple[str, ...] = ()) -> str:
    """Every panel (or those named), each under its title, then the banner at the bottom right."""
    lines: list[str] = []
    for i, (name, rows) in enumerate(PANELS, 1):
        if panels and name not in panels:
            continue
        lines += [f"── {i} {name} " + "─" * max(0, width - len(name) - 6)]
        lines += [r.text for r in rows(view)]
        lines.append("")
    line = banner_line(view_banner(view), width)
    lines.append(line.rjust(width))
    return "\n".join(lines) + "\n"
