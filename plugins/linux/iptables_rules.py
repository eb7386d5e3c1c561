"""iptables rules as argument vectors and as the canonical text iptables-save prints for them.

Callers build rules the way the reference passes them to iptables (`["-p", "tcp", "--dport",
"80", "-j", "DNAT", ...]`) and compare against one `iptables-save` by text, so they need the
exact line iptables-save would print for that rule. `canonical()` predicts it for the grammar
these plugins use (verified against iptables-save 1.8.9, nf_tables backend):

* the IP header matches come first, in the order `-s -d -i -o -p -f`, each optionally negated;
  addresses are printed as `network/prefix` (host bits masked, `/32` or `/128` added), and a
  `/0` address is not printed at all;
* then the matches in the order given: `-m comment --comment <quoted>` (cut to its first 255
  bytes, as iptables cuts a longer comment without a word), `-m multiport
  --dports|--sports|--ports`, `-m addrtype --src-type|--dst-type` (upper case), `-m mark
  --mark 0x..[/0x..]`, and the implicit protocol match of `--dport`/`--sport` (`-m tcp`, `-m
  udp`, `-m sctp`) at the point of its first option;
* then the target: `-j <chain|ACCEPT|...>`, `-j MARK --set-xmark 0x../0x..` (also from
  `--set-mark`), `-j DNAT --to-destination <addr[:port]>`, `-g <chain>`.

Anything else (other match modules, service names, hostnames) is copied verbatim and the result
is marked inexact: a caller must then ask iptables itself (`iptables -C`) whether such a rule
exists instead of trusting a text comparison.
"""

from __future__ import annotations

import ipaddress
from collections import namedtuple

from plugins.linux.iptables import save_quote, stored_comment

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    from collections.abc import Sequence

Canonical = namedtuple("Canonical", "text exact")
Canonical.__doc__ = (
    "A rule's predicted iptables-save text (without `-A CHAIN`), and whether it is certain."
)


_HEADER = {
    "-s": "s", "--source": "s", "--src": "s",
    "-d": "d", "--destination": "d", "--dst": "d",
    "-i": "i", "--in-interface": "i",
    "-o": "o", "--out-interface": "o",
    "-p": "p", "--protocol": "p",
}  # fmt: skip
_HEADER_ORDER = ("s", "d", "i", "o", "p")
_PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}
_PORT_MATCHES = ("tcp", "udp", "sctp")
_PORT_OPTS = {
    "--dport": "--dport", "--destination-port": "--dport",
    "--sport": "--sport", "--source-port": "--sport",
}  # fmt: skip
_MULTIPORT_OPTS = {
    "--dports": "--dports", "--destination-ports": "--dports",
    "--sports": "--sports", "--source-ports": "--sports",
    "--ports": "--ports",
}  # fmt: skip
_ALL_ONES = 0xFFFFFFFF


def ntop(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as glibc inet_ntop prints it (IPv4-mapped/-compatible IPv6 keep dotted IPv4)."""
    if ip.version == 4:
        return str(ip)
    packed = ip.packed
    words = [(packed[i] << 8) | packed[i + 1] for i in range(0, 16, 2)]
    if words[:5] == [0] * 5 and (words[5] == 0xFFFF or (words[5] == 0 and words[6] != 0)):
        return ("::ffff:" if words[5] else "::") + str(ipaddress.IPv4Address(packed[12:]))
    return ip.compressed


def _address(value: str, ipv6: bool) -> tuple[str | None, bool]:
    """`-s`/`-d` value as printed: (text or None when /0, exact)."""
    if "," in value:  # iptables expands a list into several rules
        return value, False
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return value, False
    if (net.version == 6) != ipv6:
        return value, False
    if net.prefixlen == 0:
        return None, True
    return f"{ntop(net.network_address)}/{net.prefixlen}", True


def _hex_mark(value: str, default_mask: int | None) -> tuple[str, bool]:
    """`V[/M]` as the mark match and MARK target print it (`0x..`, mask `0x..`)."""
    val, _, mask = value.partition("/")
    try:
        v = int(val, 0)
        m = int(mask, 0) if mask else default_mask
    except ValueError:
        return value, False
    if m is None or m == _ALL_ONES and default_mask is None:
        return f"{v:#x}", True
    return f"{v:#x}/{m:#x}", True


def _ports(value: str) -> bool:
    """True when a port or port list is numeric (what iptables prints back unchanged)."""
    for part in value.split(","):
        lo, sep, hi = part.partition(":")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return False
    return True


def _destination(value: str) -> tuple[str, bool]:
    """DNAT `--to-destination` as printed: `a.b.c.d[:port]` or `[v6][:port]`."""
    if value.startswith("["):
        addr, sep, rest = value[1:].partition("]")
        try:
            ip = ipaddress.IPv6Address(addr)
        except ValueError:
            return value, False
        return f"[{ntop(ip)}]{rest}", bool(sep)
    addr, sep, port = value.partition(":")
    try:
        ip = ipaddress.IPv4Address(addr)
    except ValueError:
        return value, False
    return f"{ip}{sep}{port}", True


def canonical(args: Sequence[str], ipv6: bool = False) -> Canonical:
    """The line iptables-save prints for a rule given as `args` (after `-A CHAIN`).

    `exact` is False when the rule uses options outside the grammar in the module docstring;
    the text is then a best effort and must not be trusted for existence checks.
    """
    header: dict[str, str] = {}
    fragment = ""
    matches: list[tuple[str, list[str]]] = []
    target: list[str] = []
    exact = True
    proto = ""
    i, n = 0, len(args)
    while i < n:
        tok = args[i]
        neg = ""
        if tok == "!" and i + 1 < n:
            neg, i = "! ", i + 1
            tok = args[i]
        if tok in _HEADER and i + 1 < n:
            key, value = _HEADER[tok], args[i + 1]
            i += 2
            if key in ("s", "d"):
                text, ok = _address(value, ipv6)
                exact &= ok
                if text is None and not neg:
                    continue
                value = text if text is not None else value
                exact &= text is not None
            elif key == "p":
                value = _PROTO_NUMBERS.get(value, value.lower())
                proto = value
            header[key] = f"{neg}-{key} {value}"
        elif tok in ("-f", "--fragment"):
            fragment, i = f"{neg}-f", i + 1
        elif tok in ("-m", "--match") and i + 1 < n and not neg:
            matches.append((args[i + 1], []))
            i += 2
        elif tok in ("-j", "--jump", "-g", "--goto") and i + 1 < n and not neg:
            t_text, ok = _target(tok, args[i + 1 :])
            target, exact = [t_text], exact and ok
            break
        else:
            name = matches[-1][0] if matches else ""
            value = args[i + 1] if i + 1 < n else ""
            if name == "comment" and tok == "--comment" and i + 1 < n:
                stored, ok = stored_comment(value)
                matches[-1][1].append(f"{neg}--comment {save_quote(stored)}")
                exact &= ok
                i += 2
            elif name == "multiport" and tok in _MULTIPORT_OPTS and i + 1 < n:
                matches[-1][1].append(f"{neg}{_MULTIPORT_OPTS[tok]} {value}")
                exact &= _ports(value)
                i += 2
            elif name == "addrtype" and tok in ("--src-type", "--dst-type") and i + 1 < n:
                matches[-1][1].append(f"{neg}{tok} {value.upper()}")
                i += 2
            elif name == "mark" and tok == "--mark" and i + 1 < n:
                text, ok = _hex_mark(value, None)
                matches[-1][1].append(f"{neg}--mark {text}")
                exact &= ok
                i += 2
            elif (tok in _PORT_OPTS and i + 1 < n
                  and (name in _PORT_MATCHES or proto in _PORT_MATCHES)):
                if name not in _PORT_MATCHES:  # implicit `-m <proto>`, loaded where first used
                    matches.append((proto, []))
                matches[-1][1].append(f"{neg}{_PORT_OPTS[tok]} {value}")
                exact &= _ports(value)
                i += 2
            else:
                # unknown option: keep it (and its value) verbatim with the current match
                exact = False
                words = [tok] if not neg else ["!", tok]
                if i + 1 < n and not args[i + 1].startswith("-") and args[i + 1] != "!":
                    words.append(save_quote(value) if " " in value else value)
                    i += 1
                i += 1
                if matches:
                    matches[-1][1].append(" ".join(words))
                else:
                    matches.append(("", [" ".join(words)]))
    out = [header[k] for k in _HEADER_ORDER if k in header]
    if fragment:
        out.append(fragment)
    for name, opts in matches:
        out.append(" ".join(([f"-m {name}"] if name else []) + opts))
    out += target
    return Canonical(" ".join(part for part in out if part), exact)


def _target(flag: str, rest: Sequence[str]) -> tuple[str, bool]:
    """`-j NAME [options]` / `-g CHAIN` as printed."""
    name, opts = rest[0], list(rest[1:])
    short = "-g" if flag in ("-g", "--goto") else "-j"
    if not opts:
        return f"{short} {name}", True
    if name == "MARK" and len(opts) == 2 and opts[0] in ("--set-xmark", "--set-mark"):
        text, ok = _hex_mark(opts[1], _ALL_ONES)
        return f"-j MARK --set-xmark {text}", ok
    if name == "DNAT" and len(opts) == 2 and opts[0] == "--to-destination":
        text, ok = _destination(opts[1])
        return f"-j DNAT --to-destination {text}", ok
    return " ".join([f"{short} {name}", *opts]), False


def _scan(line: str) -> tuple[list[str], bool]:
    """The words of an iptables-save line with the save quoting undone, and whether every
    double quote was closed."""
    words: list[str] = []
    cur: list[str] = []
    in_word = quoted = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quoted:
            if c == "\\" and i + 1 < n:
                cur.append(line[i + 1])
                i += 2
                continue
            if c == '"':
                quoted = False
            else:
                cur.append(c)
        elif c == '"':
            quoted = in_word = True
        elif c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    return words, not quoted


def split_saved(line: str) -> list[str]:
    """Split an iptables-save rule line into its words, undoing the save quoting."""
    return _scan(line)[0]


def save_unquote(text: str) -> str | None:
    """The one string iptables-save printed as `text` (bare, or double-quoted with backslash
    escapes: the inverse of `iptables.save_quote`); None when `text` is not one such word."""
    words, closed = _scan(text)
    return words[0] if closed and len(words) == 1 and text == text.strip() else None
