"""Load a site-config repo: read each file, validate its shape, then the rules across files.

`load_policy` is the one entry point. It reports every problem it finds in one `PolicyError`,
each with `FILE:LINE:COL`, and returns a `Policy` only when there are none.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from policies.errors import Diagnostic, PolicyError
from policies.model import MqttFile, NetworkFile, Policy, SiteFile
from policies.signers import Signer, parse_signers
from policies.yamlsrc import MAX_FILE_BYTES, Source, load_yaml

FILES: dict[str, type[BaseModel]] = {
    "site.yaml": SiteFile,
    "network.yaml": NetworkFile,
    "mqtt.yaml": MqttFile,
}
SIGNERS = "allowed_signers"


def load_policy(repo: str | Path, *, require_signers: bool = False) -> Policy:
    """Load and validate the policy in `repo`. Raises `PolicyError` listing every problem."""
    from policies.validate import validate_policy

    root = Path(repo)
    errors: list[Diagnostic] = []
    parsed: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name, model in FILES.items():
        display = str(root / name)
        sources[name] = Source(display)
        text = _read(root / name, display, errors)
        if text is None:
            continue
        try:
            data, sources[name] = load_yaml(text, display)
        except PolicyError as e:
            errors.extend(e.diagnostics)
            continue
        if not isinstance(data, dict):
            errors.append(sources[name].diag((), f"expected a mapping with keys {_keys(model)}"))
            continue
        try:
            parsed[name] = model.model_validate(data)
        except ValidationError as e:
            errors.extend(_diagnostics(e, sources[name], model))

    signers: list[Signer] = []
    signers_path = root / SIGNERS
    if signers_path.exists() or require_signers:
        text = _read(signers_path, str(signers_path), errors)
        if text is not None:
            signers, problems = parse_signers(text, str(signers_path))
            errors.extend(problems)

    if errors or len(parsed) < len(FILES):
        raise PolicyError(errors)
    policy = Policy(
        parsed["site.yaml"], parsed["network.yaml"], parsed["mqtt.yaml"], tuple(signers), sources
    )
    problems = validate_policy(policy)
    hard = [d for d in problems if not d.warning]
    if hard:
        raise PolicyError(problems)
    object.__setattr__(policy, "warnings", tuple(problems))
    return policy


def _read(path: Path, display: str, errors: list[Diagnostic]) -> bytes | None:
    try:
        if path.exists() and not path.is_file():
            errors.append(Diagnostic(display, 1, 1, "is not a regular file"))
            return None
        with path.open("rb") as fh:  # never more than the limit, even from a symlink to a device
            return fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        errors.append(Diagnostic(display, 1, 1, "file is missing (every site-config repo has it)"))
    except IsADirectoryError:
        errors.append(Diagnostic(display, 1, 1, "is a directory; expected a file"))
    except OSError as e:
        errors.append(Diagnostic(display, 1, 1, f"cannot read: {e.strerror}"))
    return None


def _keys(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _loc_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that owns the last key of `loc`, to suggest the right key names."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        f = fields.get(part)
        if f is None:
            return None
        ann = f.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                current = cand
                break
            inner = [
                a
                for a in getattr(cand, "__args__", ())
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            if inner:
                current = inner[0]
                break
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _diagnostics(err: ValidationError, src: Source, model: type[BaseModel]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p != "[key]")
        on_key = "[key]" in e["loc"]
        kind, msg = e["type"], e["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = [f.alias or n for n, f in owner.model_fields.items()] if owner else []
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = (
                f"; did you mean '{near[0]}'?"
                if near
                else (f"; expected one of: {', '.join(allowed)}" if allowed else "")
            )
            out.append(
                src.diag(
                    loc,
                    f"unknown key {str(loc[-1])[:64]!r} in {_loc_text(loc[:-1]) or 'the file'}{hint}",
                    key=True,
                )
            )
        elif kind == "missing":
            out.append(src.diag(loc[:-1], f"{_loc_text(loc)}: missing required key '{loc[-1]}'"))
        else:
            shown = _shown(e.get("input"))
            if kind in ("literal_error", "enum"):
                expected = str(e.get("ctx", {}).get("expected", ""))
                choices = expected.replace("'", "").replace(" or ", ", ")
                msg = f"{shown} is not one of {choices}"
            elif shown not in msg and not isinstance(e.get("input"), dict | list):
                msg = f"{msg} (got {shown})"
            out.append(src.diag(loc, f"{_loc_text(loc)}: {msg}", key=on_key))
    return out


def _shown(value: Any) -> str:
    """The bad value, as the error echoes it: repr (control and invisible characters escaped),
    cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
