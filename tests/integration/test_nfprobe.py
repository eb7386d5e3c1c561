"""plugins/linux/nfprobe.py: "absent" only when the kernel says so; nftables.list_table then
runs no `nft` process, and answers exactly as `nft` does otherwise. Real namespaces and nft."""

from __future__ import annotations

import subprocess

import pytest

from cni.netns import in_netns
from conformance import harness
from plugins.linux import nftables
from plugins.linux.nfprobe import table_absent

pytestmark = pytest.mark.netns

TABLE = "cni_plugins_masquerade"


@pytest.fixture(autouse=True)
def _needs_nft():
    import shutil

    if shutil.which("nft", path=harness.SAFE_PATH) is None:
        pytest.skip(harness.missing_reason("nft", "nftables"))


def test_absent_only_when_the_kernel_says_so(node_ns, monkeypatch):
    with in_netns(node_ns.path):
        assert table_absent("inet", TABLE)
        assert not table_absent("nosuchfamily", TABLE)  # cannot ask: "don't know"

        def no_nft(*args, **kwargs):
            raise AssertionError(f"nft run although the table is absent: {args}")

        with monkeypatch.context() as m:
            m.setattr(subprocess, "run", no_nft)
            assert nftables.list_table("inet", TABLE) is None
        subprocess.run(["nft", "add", "table", "inet", TABLE], check=True)
        subprocess.run(["nft", "add", "chain", "inet", TABLE, "masq-checks"], check=True)
        assert not table_absent("inet", TABLE)
        assert table_absent("ip", TABLE)  # the same name in another family is another table
        items = nftables.list_table("inet", TABLE)
        assert items and any("chain" in i and i["chain"]["name"] == "masq-checks" for i in items)
        subprocess.run(["nft", "delete", "table", "inet", TABLE], check=True)
        assert table_absent("inet", TABLE)
        assert nftables.list_table("inet", TABLE) is None
