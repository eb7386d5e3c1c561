"""A real container runtime attaching a container through a CNI bin directory: containerd.

`ctr run --cni` (containerd 1.6) runs the CNI plugins itself, in its own process, with the fixed
paths /etc/cni/net.d (configs), /opt/cni/bin (plugins) and /var/lib/cni (libcni's result cache), and
the runc shim puts its socket under /run/containerd/s. So the whole session - the containerd daemon,
`ctr` and therefore the plugins - runs inside a node namespace made by the test (`ip netns exec`,
which also gives a private mount namespace), where /etc, /opt, /var/lib and /run are overlaid with
temp upper layers and the bin directory under test is bind-mounted on /opt/cni/bin. Nothing is
written to the host's /etc, /opt, /var/lib or /run: containerd's root, state, socket, the runc root
and the IO fifos are all in the temp dir. `ip netns exec` hides the host's cgroup mounts (it
remounts /sys), so the session mounts the same cgroup hierarchies again for runc. The runtime
creates the container's network namespace (runc), the plugins configure it from the node namespace,
and the node namespace is deleted afterwards.

The image is built here from busybox-static as an OCI layout tarball and imported with
`ctr images import`; no registry is contacted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import tarfile
from pathlib import Path

IMAGE = "localhost/cnitest/busybox:latest"
NAMESPACE = "cnitest"
BUSYBOX = Path("/bin/busybox")
TOOLS = ("containerd", "ctr", "runc", "containerd-shim-runc-v2")
APPLETS = ("sh", "ip", "ping", "cat", "sleep", "ls", "echo")


def unavailable_reason() -> str | None:
    """Why the containerd scenario cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"{', '.join(missing)} not installed (Debian packages: containerd runc)")
    if not BUSYBOX.is_file():
        return "/bin/busybox missing (Debian package busybox-static)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (needed to keep /etc, /opt, /var/lib untouched)"
    return None


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x"}.get(m, m)


def _tar_bytes(build) -> bytes:  # noqa: ANN001 - a callable filling a TarFile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def build_image(out: Path) -> Path:
    """Write an OCI image-layout tarball of a busybox-static rootfs to `out`; return it.

    One uncompressed layer: /bin/busybox plus applet symlinks, and the empty directories a
    runtime mounts over. The index annotates the manifest with `io.containerd.image.name`,
    so `ctr images import` names it IMAGE.
    """

    def layer(tar: tarfile.TarFile) -> None:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "run"):
            _add_dir(tar, d)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)

    layer_tar = _tar_bytes(layer)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layer_digest, layer_size = blob(layer_tar)
    config = {
        "architecture": _arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = blob(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": _arch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": IMAGE,
                            "org.opencontainers.image.ref.name": "latest"},
        }],
    }

    def archive(tar: tarfile.TarFile) -> None:
        def put(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index).encode())
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest, data in blobs.items():
            put(f"blobs/sha256/{digest.split(':', 1)[1]}", data)

    out.write_bytes(_tar_bytes(archive))
    return out


def containerd_config(tmp: Path) -> str:
    """containerd 1.6 config: every path inside `tmp`, its own socket, CRI disabled."""
    return f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{tmp}/containerd.sock"

[ttrpc]
  address = "{tmp}/containerd.sock.ttrpc"

[debug]
  address = "{tmp}/debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
"""


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, mount point, super options) of the host's /sys/fs/cgroup mounts, parents first.

    `ip netns exec` remounts /sys, which hides them; runc needs them, so the session mounts
    the same hierarchies again (a cgroup mount with the same options joins the existing
    hierarchy, it does not create a new one).
    """
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        mnt = pre.split()[4]
        fstype, _src, opts = post.split()[:3]
        if mnt == "/sys/fs/cgroup" or mnt.startswith("/sys/fs/cgroup/"):
            out.append((fstype, mnt, opts))
    return out


def _cgroup_script() -> str:
    lines = []
    for fstype, mnt, opts in cgroup_mounts():
        lines.append(f"mkdir -p {mnt}")
        lines.append(f"mount -t {fstype} -o {opts} {fstype} {mnt}")
    return "\n".join(lines)


def session_script(tmp: Path, cni_bin: Path, conflist: str, container_cmd: str) -> str:
    """The shell script run inside the node namespace (see the module docstring).

    It prints `CTR-RC=<n>` after `ctr run` and leaves containerd's log in tmp/containerd.log.
    """
    sock = tmp / "containerd.sock"
    ov = tmp / "ov"
    mounts = "\n".join(
        f"mkdir -p {ov}/{n}.u {ov}/{n}.w\n"
        f"mount -t overlay overlay -o lowerdir={p},upperdir={ov}/{n}.u,workdir={ov}/{n}.w {p}"
        for n, p in (("etc", "/etc"), ("opt", "/opt"), ("varlib", "/var/lib"), ("run", "/run")))
    return f"""set -eu
{_cgroup_script()}
{mounts}
mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/cni {tmp}/runc {tmp}/fifo
cat > /etc/cni/net.d/10-flannel.conflist <<'CONFLIST'
{conflist}
CONFLIST
mount --bind {cni_bin} /opt/cni/bin
containerd --config {tmp}/containerd.toml > {tmp}/containerd.log 2>&1 &
cpid=$!
echo "CONTAINERD-PID=$cpid"
i=0
while [ ! -S {sock} ]; do
  i=$((i + 1)); [ $i -gt 150 ] && {{ echo "containerd did not start"; kill $cpid; exit 3; }}
  sleep 0.1
done
ctr -a {sock} -n {NAMESPACE} images import {tmp}/image.tar
set +e
ctr -a {sock} -n {NAMESPACE} run --cni --rm --runc-root {tmp}/runc --fifo-dir {tmp}/fifo \\
    {IMAGE} cnitest-ctr1 /bin/sh -c '{container_cmd}'
echo "CTR-RC=$?"
ctr -a {sock} -n {NAMESPACE} containers ls -q
ctr -a {sock} -n {NAMESPACE} images rm {IMAGE} >/dev/null
kill $cpid
wait $cpid
echo "CONTAINERD-EXIT=$?"
"""
