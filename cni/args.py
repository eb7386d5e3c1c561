"""CNI_ARGS parsing, `K=V;K=V`, with the reference LoadArgs semantics (docs/spec-rules.md §7.2)."""

from __future__ import annotations

from cni.errors import ERR_INVALID_ENVIRONMENT_VARIABLES, CNIError, one_line


def parse_pairs(cni_args: str) -> list[tuple[str, str]]:
    """Split CNI_ARGS into (key, value) pairs; each piece must split on `=` into exactly two
    parts."""
    if not cni_args:
        return []
    pairs = []
    for piece in cni_args.split(";"):
        kv = piece.split("=")
        if len(kv) != 2:
            raise CNIError(
                ERR_INVALID_ENVIRONMENT_VARIABLES, f'ARGS: invalid pair "{one_line(piece)}"'
            )
        pairs.append((kv[0], kv[1]))
    return pairs


def parse_bool(value: str, pair: str) -> bool:
    """Decode 1/true/0/false in any case, as the reference's UnmarshallableBool does."""
    low = value.lower()
    if low in ("1", "true"):
        return True
    if low in ("0", "false"):
        return False
    raise CNIError(
        ERR_INVALID_ENVIRONMENT_VARIABLES,
        one_line(
            f'ARGS: error parsing value of pair "{pair}": boolean unmarshal error: invalid input '
            f'{value}'
        ),
    )


def load_args(cni_args: str, known: set[str] | frozenset[str]) -> dict[str, str]:
    """Parse CNI_ARGS keeping the `known` keys (last duplicate wins).

    Unknown keys are an error unless IgnoreUnknown is true anywhere in the string, as the reference.
    """
    out: dict[str, str] = {}
    unknown: list[str] = []
    ignore_unknown = False
    for k, v in parse_pairs(cni_args):
        if k == "IgnoreUnknown":
            ignore_unknown = parse_bool(v, f"{k}={v}")
        elif k in known:
            out[k] = v
        else:
            unknown.append(f"{k}={v}")
    if unknown and not ignore_unknown:
        listed = " ".join(f'"{u}"' for u in unknown)
        raise CNIError(
            ERR_INVALID_ENVIRONMENT_VARIABLES, one_line(f"ARGS: unknown args [{listed}]")
        )
    return out
