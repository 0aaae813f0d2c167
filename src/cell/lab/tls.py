"""The lab's PKI, made with `openssl`: a CA, the hub's server certificate and two client ones.

The Cell's client certificate and the CA go where the policy's `hub.bridge.tls` says, under the
gateway's file root, so the broker config rendered for the lab uses them unchanged. The observer's
certificate lets tests and people subscribe at the hub. EC P-256 keys: the whole PKI takes a
fraction of a second. Lab keys are throwaway and live under /run (tmpfs), readable by root only.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cell.lab.errors import LabError

DAYS = "30"
_NEWKEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: str
    ca_key: str
    hub_cert: str
    hub_key: str
    observer_cert: str
    observer_key: str
    cell_cert: str
    cell_key: str


def make_pki(out: Path, *, site: str, hub_dns: list[str], hub_ips: list[str], cell_cn: str) -> Pki:
    """Write a CA and three leaf certificates into `out` (created 0700)."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = Pki(
        ca=str(out / "ca.pem"),
        ca_key=str(out / "ca.key"),
        hub_cert=str(out / "hub.pem"),
        hub_key=str(out / "hub.key"),
        observer_cert=str(out / "observer.pem"),
        observer_key=str(out / "observer.key"),
        cell_cert=str(out / "cell.pem"),
        cell_key=str(out / "cell.key"),
    )
    _run(
        [
            "openssl",
            "req",
            "-x509",
            *_NEWKEY,
            "-keyout",
            pki.ca_key,
            "-out",
            pki.ca,
            "-days",
            DAYS,
            "-subj",
            f"/O=Cell lab/CN=Cell lab CA for {site}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    san = ",".join([*(f"DNS:{n}" for n in hub_dns), *(f"IP:{a}" for a in hub_ips)])
    leaves = [
        ("hub", hub_dns[0] if hub_dns else hub_ips[0], "serverAuth", san),
        ("cell", cell_cn, "clientAuth", None),
        ("observer", "lab-observer", "clientAuth", None),
    ]
    procs = [(name, _leaf(out, name, cn, usage, alt)) for name, cn, usage, alt in leaves]
    for name, proc in procs:
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise LabError(
                f"openssl could not make the lab's {name} certificate: "
                + err.decode(errors="replace").strip()
            )
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(out / f"{name}.csr"),
                "-CA",
                pki.ca,
                "-CAkey",
                pki.ca_key,
                "-set_serial",
                f"0x{secrets.token_hex(8)}",
                "-days",
                DAYS,
                "-out",
                str(out / f"{name}.pem"),
                "-extfile",
                str(out / f"{name}.ext"),
            ]
        )
    for key in out.glob("*.key"):
        key.chmod(0o600)
    return pki


def _leaf(out: Path, name: str, cn: str, usage: str, san: str | None) -> subprocess.Popen[bytes]:
    ext = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        f"extendedKeyUsage={usage}",
    ]
    if san:
        ext.append(f"subjectAltName={san}")
    (out / f"{name}.ext").write_text("\n".join(ext) + "\n")
    argv = [
        "openssl",
        "req",
        "-new",
        *_NEWKEY,
        "-keyout",
        str(out / f"{name}.key"),
        "-out",
        str(out / f"{name}.csr"),
        "-subj",
        f"/O=Cell lab/CN={cn}",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise LabError(f"cannot run openssl for the lab's certificates: {e}") from e
    if done.returncode != 0:
        raise LabError(
            f"openssl failed ({' '.join(argv[:3])}): {done.stderr.decode(errors='replace').strip()}"
        )


def install(src: str, dst: str, *, private: bool = False) -> None:
    """Copy a lab PKI file to where a config expects it (keys 0600)."""
    path = Path(dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, path)
    path.chmod(0o600 if private else 0o644)
