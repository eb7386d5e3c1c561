"""cni.gocompat.decode: Go's key matching and null rules, and the errors it words."""

from __future__ import annotations

import sys

import pytest
from pydantic import Field

from cni.config import CNIModel
from cni.errors import ERR_DECODING_FAILURE, CNIError
from cni.gocompat import decode


class _Conf(CNIModel):
    name: str = "dflt"
    mtu: int = 0
    note: str | None = None
    tags: list[str] = Field(default_factory=list)
    gc: list[dict] | None = Field(default=None, alias="cni.dev/valid-attachments")


def test_field_matches_case_insensitively_and_the_last_duplicate_wins() -> None:
    assert decode.field({"PrevResult": 1, "prevresult": 2}, "prevresult") == 2
    assert decode.field({"a": 1}, "prevresult") is None
    assert decode.field(["not", "an", "object"], "a") is None
    assert decode.field({1: "x", "A": "y"}, "a") == "y"


def test_match_keys_renames_known_keys_and_keeps_or_drops_the_rest() -> None:
    table = decode.key_table(_Conf)
    assert table["cni.dev/valid-attachments"] == "cni.dev/valid-attachments"
    data = {"NAME": "a", "Name": "b", "Other": 1}
    assert decode.match_keys(data, table, keep_unknown=True) == {"name": "b", "Other": 1}
    assert decode.match_keys(data, table, keep_unknown=False) == {"name": "b"}


def test_key_table_uses_the_given_json_keys_for_fields_without_alias() -> None:
    class _Other(CNIModel):
        cni_version: str = ""

    assert decode.key_table(_Other, {"cni_version": "cniVersion"}) == {"cniversion": "cni_version"}


def test_without_nulls_drops_only_the_nulls_go_ignores() -> None:
    data = {"name": None, "NOTE": None, "extra": None, "mtu": 5}
    assert decode.defaulted_keys(_Conf) == frozenset({"name", "mtu", "tags"})
    assert decode.without_nulls(data, decode.defaulted_keys(_Conf)) == {
        "NOTE": None, "extra": None, "mtu": 5,
    }
    assert decode.without_nulls(data) == {"mtu": 5}


def test_go_validate_words_errors_as_go_and_config_error_as_the_config_loader() -> None:
    from cni.result import Route

    with pytest.raises(CNIError) as e:
        decode.go_validate(Route, {"dst": "10.0.0.0/8", "mtu": "x"}, "Route", "ctx: ")
    assert (e.value.code, e.value.msg) == (
        ERR_DECODING_FAILURE,
        "ctx: json: cannot unmarshal string into Go struct field Route.mtu of type int",
    )
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as v:
        _Conf.model_validate({"mtu": "9"})
    err = decode.config_error(v.value)
    assert (err.code, err.msg) == (
        ERR_DECODING_FAILURE,
        'invalid mtu "9": Input should be a valid integer',
    )


def test_importing_it_loads_neither_typing_nor_pydantic() -> None:
    import subprocess

    code = (
        "import sys, cni.gocompat.decode; "
        "print(sorted(m for m in ('typing', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
