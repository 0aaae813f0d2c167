"""The `cell` command line. Only this module turns errors into exit codes (DESIGN.md):
0 fine, 1 unexpected failure, 2 bad input or refused, 3 a check found a problem.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cell.cli.util import check_paths, emit, load, repo
from cell.paths import REPO_HELP
from policies.errors import CellError

Handler = Callable[[argparse.Namespace], int]


def cmd_validate(args: argparse.Namespace) -> int:
    policy = load(args)
    site, mode = policy.site.site.id, policy.site.site.mode
    doc = {"ok": True, "site": site, "mode": mode, "warnings": [str(w) for w in policy.warnings]}
    emit(args, doc, f"{repo(args)}: valid (site {site}{', sealed' if policy.sealed else ''})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from cell.artifacts import render_all, write_tree
    from policies.layout import MANIFEST

    files = render_all(load(args))
    write_tree(Path(args.out), files)
    manifest = json.loads(files[MANIFEST])
    text = "\n".join(
        f"{digest[:12]}  {args.out}/{name}" for name, digest in manifest["files"].items()
    )
    emit(args, manifest, text)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from policies.load import FILES

    schemas = {name: model.model_json_schema(by_alias=True) for name, model in FILES.items()}
    if args.file:
        if args.file not in schemas:
            raise _usage(f"unknown file '{args.file}'; one of: {', '.join(schemas)}")
        print(json.dumps(schemas[args.file], indent=2, ensure_ascii=False))
    else:
        print(json.dumps(schemas, indent=2, ensure_ascii=False))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from cell import explain

    policy = load(args)
    if args.what == "topic":
        doc = explain.explain_topic(policy, args.topic)
        emit(args, doc, explain.format_topic(doc))
    else:
        doc = explain.explain_flow(policy, args.source, args.to)
        emit(args, doc, explain.format_flow(doc))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from cell.cli import verify as verify_cli
    from cell.lab import lab_status
    from cell.verify.inplace import box_outside, probe_segments
    from cell.verify.prober import Env, format_results, probe_timeout, run_probes
    from firewall.probes import compile_probes, inplace_probes

    if verify_cli.probe_history_requested(args):
        return verify_cli.cmd_probe_history(args)
    from cell.cli.applied import applied_policy

    policy, _ = applied_policy(args)  # what runs, never the work tree
    lab = lab_status(policy.site.site.id)
    wait = probe_timeout(policy)
    if args.lab:
        if lab is None:
            raise _usage(f"no lab is up for site {policy.site.site.id}: run `cell lab up` first")
        env = Env(lab.gateway, lab.vlan_netns, lab.outside, timeout=wait)
        run = run_probes(compile_probes(policy), env)
    else:  # in place: the lab's gateway when one is up, else this host (a real Cell)
        gateway = lab.gateway if lab else None
        outside = lab.outside if lab else box_outside(policy)
        with probe_segments(policy, gateway) as vlans:
            run = run_probes(inplace_probes(policy), Env(gateway, vlans, outside, timeout=wait))
    paths = verify_cli.probe_paths(policy, lab) if not args.lab else []
    verify_cli.record_probe(args, run)
    doc = {**run.to_doc(), **({"paths": paths} if paths else {})}
    emit(args, doc, format_results(run) + verify_cli.format_paths(paths))
    return 0 if run.ok and not paths else 3


def cmd_demo(args: argparse.Namespace) -> int:
    from cell.cli.demo import run_demo

    return run_demo(args.repo, keep=args.keep)


def _usage(message: str) -> CellError:
    from cell.errors import UsageError

    return UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cell",
        description="Cell: keep a camera site's raw data on the site, and prove it.",
        epilog="Exit codes: 0 fine, 1 unexpected failure, 2 bad input or refused, 3 a check found a problem.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Handler, help: str, *, repo: bool = True, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        if repo:
            sp.add_argument("--repo", help=REPO_HELP)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(handler=handler)
        return sp

    command("validate", cmd_validate, "validate the policy; errors as FILE:LINE:COL: message")
    sp = command("render", cmd_render, "write every artifact and manifest.json (sha256 of each)")
    sp.add_argument("--out", required=True, help="output directory")
    sp = command(
        "schema",
        cmd_schema,
        "print JSON Schema for site.yaml, network.yaml and mqtt.yaml",
        repo=False,
        json_flag=False,
    )
    sp.add_argument(
        "file", nargs="?", help="one of site.yaml, network.yaml, mqtt.yaml (default: all three)"
    )

    ex = sub.add_parser("explain", help="which rule decides a topic or a flow")
    exs = ex.add_subparsers(dest="what", required=True, metavar="WHAT")
    t = exs.add_parser(
        "topic", help="direction of a topic and the rule (file:line) that decides it"
    )
    t.add_argument("topic")
    f = exs.add_parser("flow", help="verdict for a flow and the rule that decides it")
    f.add_argument(
        "--from",
        dest="source",
        required=True,
        help="host, VLAN, gateway, hub.bridge, hub.management or IP",
    )
    f.add_argument("--to", required=True, help="ENDPOINT[:PORT/PROTO], e.g. cameras:554/tcp")
    for sp in (t, f):
        sp.add_argument("--repo", help=REPO_HELP)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(handler=cmd_explain)

    sp = command(
        "probe",
        cmd_probe,
        "run the expected-flow matrix with real packets (exit 3 if a flow misbehaves)",
    )
    sp.add_argument(
        "--lab",
        action="store_true",
        help="probe from the lab's hosts (their own addresses) instead of in place from each "
        "VLAN's probe address",
    )
    from cell.cli.verify import add_probe_history, add_verify_commands

    add_probe_history(sp)
    add_verify_commands(sub)

    from cell.cli.apply import add_apply_commands
    from cell.cli.lab import add_lab_commands

    add_apply_commands(sub)
    add_lab_commands(sub)
    from cell.cli.bridge import add_bridge_commands

    add_bridge_commands(sub)
    from cell.cli.gitops import add_gitops_commands

    add_gitops_commands(sub)
    from cell.cli.console import add_console_commands

    add_console_commands(sub)
    from cell.cli.pcap import add_pcap_commands

    add_pcap_commands(sub)
    from cell.cli.incident import add_incident_commands

    add_incident_commands(sub)
    from cell.cli.fleet import add_fleet_commands

    add_fleet_commands(sub)
    from cell.cli.status import add_status_commands

    add_status_commands(sub)

    sp = command("demo", cmd_demo, "run the product on the embedded example site", json_flag=False)
    sp.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    return p


def _error_doc(e: CellError) -> dict[str, object]:
    """What `--json` prints when a command fails: scripts always get JSON on stdout."""
    from policies.errors import PolicyError
    from policies.trust import TrustRefused

    doc: dict[str, object] = {"ok": False, "exit": e.exit_code, "error": str(e)}
    if isinstance(e, TrustRefused):
        doc["refused"] = e.to_json()
    if isinstance(e, PolicyError):
        doc["errors"] = [
            {"file": d.file, "line": d.line, "col": d.col, "message": d.message}
            for d in e.diagnostics
            if not d.warning
        ]
    return doc


_PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT}


def main(argv: Sequence[str] | None = None) -> int:
    from cell.timeparse import join_time_flags

    parser = build_parser()
    args = parser.parse_args(join_time_flags(sys.argv[1:] if argv is None else argv))
    try:
        check_paths(args)
        code: int = args.handler(args)
        return code
    except CellError as e:
        print(str(e), file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps(_error_doc(e), indent=2, ensure_ascii=False))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("CELL_DEBUG"):
            raise
        if isinstance(e, OSError) and e.filename is not None and e.errno in _PATH_ERRNOS:
            # A path named (or implied) on the command line that is not what was expected.
            print(
                f"cell: {e.filename}: {e.strerror}: not a place this command can use",
                file=sys.stderr,
            )
            return 2
        print(
            f"cell: internal error: {type(e).__name__}: {e} (set CELL_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
