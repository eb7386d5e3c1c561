"""Network configuration loading and version selection (docs/spec-rules.md §5.1, §5.3, §8.1;
C71-C82)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cni.gocompat import json as gojson
from cni.libcni import conflist
from cni.libcni.conflist import ConfError, NoConfigsFoundError, NotFoundError


def _list(**kw) -> bytes:
    base = {"name": "net1", "cniVersion": "1.1.0", "plugins": [{"type": "bridge"}]}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP}).encode()


_DROP = object()


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
    return path


# ------------------------------------------------------------------ C71-C72


def test_missing_name_is_an_error():
    with pytest.raises(ConfError, match=r"^error parsing configuration list: no name$"):
        conflist.list_from_bytes(_list(name=_DROP))


def test_name_must_be_a_string():
    with pytest.raises(ConfError, match="invalid name type float64"):
        conflist.list_from_bytes(_list(name=5))


def test_empty_plugins_list():
    with pytest.raises(ConfError, match="no plugins in list"):
        conflist.list_from_bytes(_list(plugins=[]))


def test_plugins_not_a_list():
    with pytest.raises(ConfError, match=r"invalid 'plugins' type map\[string\]interface \{\}"):
        conflist.list_from_bytes(_list(plugins={"type": "bridge"}))


def test_plugin_without_type():
    with pytest.raises(ConfError) as info:
        conflist.list_from_bytes(_list(plugins=[{"type": "a"}, {"mtu": 1}]))
    assert (
        str(info.value)
        == "failed to parse plugin config 1: error parsing configuration: missing 'type'"
    )


def test_plugin_with_badly_typed_known_key():
    # Go decodes the object into types.PluginConf: capabilities must map to booleans.
    with pytest.raises(
        ConfError,
        match="failed to parse plugin config 0: error parsing configuration: .*capabilities",
    ):
        conflist.list_from_bytes(
            _list(plugins=[{"type": "a", "capabilities": {"portMappings": "yes"}}])
        )


def test_cniversion_must_be_a_string():
    with pytest.raises(ConfError, match="invalid cniVersion type float64"):
        conflist.list_from_bytes(_list(cniVersion=1.0))


def test_not_json_and_not_an_object():
    with pytest.raises(ConfError, match="^error parsing configuration list: "):
        conflist.list_from_bytes(b"{nope")
    with pytest.raises(ConfError, match="cannot unmarshal array"):
        conflist.list_from_bytes(b"[1]")


# ------------------------------------------------------------------ C73


@pytest.mark.parametrize(
    "value,expected",
    [
        (True, True),
        (False, False),
        ("TRUE", True),
        ("true", True),
        ("false", False),
        ("False", False),
    ],
)
def test_booleans_accept_strings(value, expected):
    for key, attr in (
        ("disableCheck", "disable_check"),
        ("disableGC", "disable_gc"),
        ("loadOnlyInlinedPlugins", "load_only_inlined_plugins"),
    ):
        conf = conflist.list_from_bytes(_list(**{key: value}))
        assert getattr(conf, attr) is expected


def test_boolean_bad_string_and_bad_type():
    with pytest.raises(ConfError) as info:
        conflist.list_from_bytes(_list(disableCheck="yes"))
    assert (
        str(info.value) == 'error parsing configuration list: invalid value "yes" for disableCheck'
    )
    with pytest.raises(ConfError, match="invalid type float64 for disableGC"):
        conflist.list_from_bytes(_list(disableGC=1))


# ------------------------------------------------------------------ C74-C77


def test_load_only_inlined_without_plugins(tmp_path):
    with pytest.raises(ConfError, match="`loadOnlyInlinedPlugins` is true, and no 'plugins' key"):
        conflist.list_from_bytes(_list(plugins=_DROP, loadOnlyInlinedPlugins=True))


def test_sibling_plugins_appended_after_inlined(tmp_path):
    f = _write(tmp_path / "10-net1.conflist", json.loads(_list(plugins=[{"type": "first"}])))
    _write(tmp_path / "net1" / "b.conf", {"type": "third"})
    _write(tmp_path / "net1" / "a.conf", {"type": "second", "x": 1})
    _write(tmp_path / "net1" / "c.json", {"type": "ignored-json"})
    (tmp_path / "net1" / "d.conf").mkdir()  # directories are skipped
    conf = conflist.list_from_file(str(f))
    assert [p.type for p in conf.plugins] == ["first", "second", "third"]
    # sibling plugin bytes are kept as read
    assert conf.plugins[1].bytes == (tmp_path / "net1" / "a.conf").read_bytes()


def test_missing_or_empty_sibling_dir_is_fine(tmp_path):
    f = _write(tmp_path / "10-net1.conflist", json.loads(_list()))
    assert [p.type for p in conflist.list_from_file(str(f)).plugins] == ["bridge"]
    (tmp_path / "net1").mkdir()
    assert [p.type for p in conflist.list_from_file(str(f)).plugins] == ["bridge"]


def test_sibling_only_plugins(tmp_path):
    f = _write(tmp_path / "10-net1.conflist", {"name": "net1", "cniVersion": "1.0.0"})
    _write(tmp_path / "net1" / "a.conf", {"type": "only"})
    assert [p.type for p in conflist.list_from_file(str(f)).plugins] == ["only"]


def test_bad_sibling_plugin_is_an_error(tmp_path):
    f = _write(tmp_path / "10-net1.conflist", json.loads(_list()))
    _write(tmp_path / "net1" / "a.conf", {"notype": 1})
    with pytest.raises(ConfError, match="missing 'type'"):
        conflist.list_from_file(str(f))


def test_load_only_inlined_ignores_siblings(tmp_path):
    f = _write(tmp_path / "10-net1.conflist", json.loads(_list(loadOnlyInlinedPlugins=True)))
    _write(tmp_path / "net1" / "a.conf", {"type": "sibling"})
    assert [p.type for p in conflist.list_from_file(str(f)).plugins] == ["bridge"]


def test_no_plugins_anywhere(tmp_path):
    f = _write(tmp_path / "10-net1.conflist", {"name": "net1", "cniVersion": "1.0.0"})
    with pytest.raises(ConfError, match="^no plugin configs found$"):
        conflist.list_from_file(str(f))


# ------------------------------------------------------------------ C78-C79


@pytest.mark.parametrize(
    "cni_version,versions,expected",
    [
        (None, ["1.1.0", "0.4.0", "1.0.0"], "1.1.0"),
        (None, ["99.0.0", "1.1.0", "0.4.0", "1.0.0"], "1.1.0"),
        ("1.0.0", ["0.1.0", "0.4.0"], "1.0.0"),
        ("0.3.1", ["0.4.0"], "0.4.0"),
        (None, [], ""),
        ("1.2.3", None, "1.2.3"),
        ("1.2.3", ["99.0.0"], "1.2.3"),
        ("", ["0.3.1", "0.4"], "0.4"),
    ],
)
def test_version_selection(cni_version, versions, expected):
    obj = {"name": "n", "plugins": [{"type": "t"}]}
    if cni_version is not None:
        obj["cniVersion"] = cni_version
    if versions is not None:
        obj["cniVersions"] = versions
    assert conflist.list_from_bytes(json.dumps(obj).encode()).cni_version == expected


def test_version_selection_errors():
    with pytest.raises(ConfError, match="invalid cniVersions entry 1.0.f at index 2"):
        conflist.list_from_bytes(_list(cniVersions=["1.1.0", "0.4.0", "1.0.f"]))
    with pytest.raises(ConfError, match="invalid type for cniVersions index 1: float64"):
        conflist.list_from_bytes(_list(cniVersions=["1.1.0", 4]))
    with pytest.raises(ConfError, match="invalid type for cniVersions: string"):
        conflist.list_from_bytes(_list(cniVersions="1.1.0"))
    with pytest.raises(ConfError, match="invalid cniVersion 1.x"):
        conflist.list_from_bytes(_list(cniVersion="1.x", cniVersions=["1.0.0"]))


# ------------------------------------------------------------------ C80-C82


def test_conflist_beats_conf_then_conf_is_upconverted(tmp_path):
    conf_obj = {"cniVersion": "0.4.0", "name": "net1", "type": "single", "mtu": 1400, "ratio": 1.0}
    _write(tmp_path / "00-net1.conf", conf_obj)
    listed = _write(tmp_path / "99-net1.conflist", json.loads(_list(plugins=[{"type": "listed"}])))
    got = conflist.load(str(tmp_path), "net1")
    assert [p.type for p in got.plugins] == ["listed"]
    assert got.bytes == listed.read_bytes()
    listed.unlink()
    got = conflist.load(str(tmp_path), "net1")
    assert got.name == "net1" and got.cni_version == "0.4.0"
    assert [p.type for p in got.plugins] == ["single"]
    assert got.disable_check is False
    # libcni's re-serialisation of {"name","cniVersion","plugins":[obj]}: sorted keys, Go numbers
    assert got.bytes == (
        b'{"cniVersion":"0.4.0","name":"net1","plugins":[{"cniVersion":"0.4.0","mtu":1400,'
        b'"name":"net1","ratio":1,"type":"single"}]}'
    )


def test_json_files_found_nested_dirs_not(tmp_path):
    _write(tmp_path / "sub" / "10-deep.conf", {"cniVersion": "1.0.0", "name": "deep", "type": "x"})
    _write(tmp_path / "10-js.json", {"cniVersion": "1.0.0", "name": "js", "type": "jsplugin"})
    assert [p.type for p in conflist.load(str(tmp_path), "js").plugins] == ["jsplugin"]
    with pytest.raises(NotFoundError):
        conflist.load(str(tmp_path), "deep")


def test_first_match_in_byte_order(tmp_path):
    _write(tmp_path / "b.conflist", json.loads(_list(plugins=[{"type": "from-b"}])))
    _write(tmp_path / "B.conflist", json.loads(_list(plugins=[{"type": "from-B"}])))
    _write(tmp_path / "a.conf", {"name": "net1", "type": "from-conf"})
    assert [p.type for p in conflist.load(str(tmp_path), "net1").plugins] == ["from-B"]


def test_missing_dir_and_unknown_name(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(NoConfigsFoundError) as info:
        conflist.load(str(missing), "x")
    assert str(info.value) == f"no net configurations found in {missing}"
    _write(tmp_path / "a.conflist", json.loads(_list()))
    with pytest.raises(NotFoundError) as info:
        conflist.load(str(tmp_path), "other")
    assert str(info.value) == f'no net configuration with name "other" in {tmp_path}'
    _write(tmp_path / "b.conf", {"name": "n2", "type": "t"})
    with pytest.raises(NotFoundError):
        conflist.load(str(tmp_path), "other")


def test_empty_dir_has_no_configs(tmp_path):
    with pytest.raises(NoConfigsFoundError):
        conflist.load(str(tmp_path), "x")


def test_malformed_file_aborts_lookup(tmp_path):
    _write(tmp_path / "00-bad.conflist", b'{"name": "bad", "plugins": "oops"}')
    _write(tmp_path / "10-good.conflist", json.loads(_list()))
    with pytest.raises(ConfError, match="invalid 'plugins' type"):
        conflist.load(str(tmp_path), "net1")
    (tmp_path / "00-bad.conflist").write_bytes(b"{not json")
    with pytest.raises(ConfError, match="^error parsing configuration list"):
        conflist.load(str(tmp_path), "net1")


def test_malformed_single_conf_aborts_lookup(tmp_path):
    _write(tmp_path / "00-bad.conf", {"name": "bad"})
    _write(tmp_path / "10-good.conf", {"name": "good", "type": "t"})
    with pytest.raises(ConfError, match="missing 'type'"):
        conflist.load(str(tmp_path), "good")


def test_extension_match_is_exact(tmp_path):
    _write(tmp_path / "a.CONFLIST", json.loads(_list()))
    _write(tmp_path / "a.conflist.bak", json.loads(_list()))
    with pytest.raises(NoConfigsFoundError):
        conflist.load(str(tmp_path), "net1")


def test_list_bytes_are_the_file_bytes(tmp_path):
    raw = b'{ "name":"net1",\n "cniVersion":"1.1.0", "plugins":[{"type":"t","a":1.50}] }\n'
    f = _write(tmp_path / "x.conflist", raw)
    conf = conflist.load(str(tmp_path), "net1")
    assert conf.bytes == raw
    assert (
        conf.plugins[0].bytes == gojson.marshal({"type": "t", "a": 1.5}) == b'{"a":1.5,"type":"t"}'
    )
    assert f.read_bytes() == raw


def test_plugin_keys_matched_case_insensitively():
    conf = conflist.list_from_bytes(
        _list(plugins=[{"Type": "bridge", "Capabilities": {"mac": True}}])
    )
    assert conf.plugins[0].type == "bridge"
    assert conf.plugins[0].capabilities == {"mac": True}


def test_description():
    conf = conflist.list_from_bytes(_list(plugins=[{"type": "a"}, {"type": "b", "name": "own"}]))
    assert conf.plugins[0].description() == 'type="a"'
    assert conf.plugins[1].description() == 'type="b" name="own"'
