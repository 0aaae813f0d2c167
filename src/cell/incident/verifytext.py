"""VERIFY.txt: how a third party checks a pack offline, with `sha256sum`, `ssh-keygen` and
`age` only (docs/incident.md explains each step). Pure."""

from __future__ import annotations

PIN = """\
0. Pin the Cell's evidence key. Its allowed_signers line is printed by `cell evidence-key` on the
   Cell and recorded in its audit ledger at enrolment (the `evidence_key` of the `enroll` entry).
   A copy is in ./allowed_signers: compare it with the line you pinned before trusting it, or
   write your pinned line to a file and use that file instead of ./allowed_signers below.

     cat allowed_signers
"""

SIGN = """\
1. The signature of SHA256SUMS, by the Cell's evidence key (prints "Good ... signature"):

     ssh-keygen -Y verify -f allowed_signers -I {who} -n {who} -s SHA256SUMS.sig < SHA256SUMS
"""

SUMS = """\
2. Every file against SHA256SUMS (each line must say OK):

     sha256sum --strict -c SHA256SUMS

   and no file that SHA256SUMS does not list (prints nothing when the pack is whole):

     find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig | sed 's|^\\./||' | LC_ALL=C sort \\
       | diff - <(sed 's/^[0-9a-f]*  //' SHA256SUMS | LC_ALL=C sort)
"""

LEDGER = """\
3. The audit ledger. ledger/chain.jsonl holds the window's ledger entries and every entry after
   them up to the head, byte for byte. Each entry's "prev" is the sha256 of the line before it
   (without its newline), and the head names the last line. The head is signed by the same key,
   in the namespace cell-ledger:

     ssh-keygen -Y verify -f allowed_signers -I {who} -n cell-ledger -s ledger/head.txt.sig \\
       < ledger/head.txt
     while IFS= read -r line; do printf '%s' "$line" | sha256sum; done < ledger/chain.jsonl

   The hash printed for each line must be the "prev" of the next line, and the last one the
   "hash" in ledger/head.txt. ledger/window.json says which seqs fall inside the window.

4. The configuration of every commit applied in the window is in commits/SHA-ID/, re-rendered
   from the commit's tree; commits/SHA-ID/manifest.json has the sha256 of each file, which
   steps/commits.jsonl compares with what the Cell's journal and ledger recorded.

5. The capture: capture/window.pcapng holds exactly the WAN packets of the window (read it with
   tcpdump -r or Wireshark); its comment and report.json say what the capture did not cover.

Or, with Cell installed: cell incident verify . [--signers PINNED_FILE]
"""

ENCRYPTED = """\
2. The encrypted pack against SHA256SUMS: this checks custody without decrypting anything.

     sha256sum --strict -c SHA256SUMS

3. A recipient (a holder of one of the identities in site.yaml evidence.recipients) decrypts
   and unpacks it, then checks the plain pack inside the same way (its own VERIFY.txt):

     age --decrypt -i YOUR_IDENTITY_FILE -o pack.tar pack.tar.age
     tar -xf pack.tar && cd {top} && cat VERIFY.txt

Or, with Cell installed: cell incident verify . [--identity YOUR_IDENTITY_FILE]
"""


def verify_text(site: str, *, encrypted: bool, top: str = "") -> str:
    who = f"cell-evidence@{site}"
    head = (
        f"Evidence pack of site {site}: how to check it offline with sha256sum, ssh-keygen"
        + (" and age" if encrypted else "")
        + ".\nRun these commands in this folder (bash).\n\n"
    )
    body = (
        [PIN, SIGN.format(who=who), ENCRYPTED.format(top=top)]
        if encrypted
        else [PIN, SIGN.format(who=who), SUMS, LEDGER.format(who=who)]
    )
    return head + "\n".join(body)
