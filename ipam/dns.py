"""resolv.conf parsing for the `resolvConf` key, as the reference's dns.go
(docs/reference-behaviour.md §1.6)."""

from __future__ import annotations

from cni.errors import ERR_INTERNAL, CNIError, one_line, os_error_text
from cni.fileutil import read_small_file

_MAX_LINE = 64 * 1024  # bufio.Scanner's default token limit


def parse_resolv_conf(path: str) -> dict[str, list[str] | str]:
    """The DNS settings in the file at `path`: nameservers, domain, search, options.

    Lines are trimmed; empty lines and lines starting with `#` or `;` are skipped, as are lines
    with fewer than two fields. `nameserver` adds its first argument, `domain` sets the domain
    (last wins), `search` and `options` add all their arguments. Raises CNIError 999 with the
    reference's text (`open <path>: no such file or directory`) when the file cannot be read.
    """
    try:
        data = read_small_file(path)
    except IsADirectoryError:
        raise CNIError(ERR_INTERNAL, one_line(f"read {path}: is a directory")) from None
    except OSError as e:
        raise CNIError(ERR_INTERNAL, one_line(f"open {path}: {os_error_text(e)}")) from None
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for raw in data.split(b"\n"):
        if len(raw) > _MAX_LINE:
            raise CNIError(ERR_INTERNAL, "bufio.Scanner: token too long")
        line = raw.decode("utf-8", "replace").strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        key = fields[0]
        if key == "nameserver":
            nameservers.append(fields[1])
        elif key == "domain":
            domain = fields[1]
        elif key == "search":
            search.extend(fields[1:])
        elif key == "options":
            options.extend(fields[1:])
    return {"nameservers": nameservers, "domain": domain, "search": search, "options": options}
