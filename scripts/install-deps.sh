#!/bin/sh
# Install what a fresh Debian or Ubuntu machine lacks for the README's two commands (as root).
#
#   sh scripts/install-deps.sh [demo|test]                install what is missing (idempotent)
#   sh scripts/install-deps.sh [demo|test] --check        only list what is missing (exit 1 if any)
#   sh scripts/install-deps.sh --print-python             print the Python (>= 3.11) to build with
#
# `demo` (the default) is what `make build` and `make demo` need; `test` is that plus everything
# the test suite drives (what `make test` and CI run). Each need is checked by what it provides
# (a command, a module, a library, a file), so nothing is installed when it is already there by
# any means; `apt-get update` runs only when something is missing. Needs:
#   demo:  ip + bridge (iproute2), iptables-save/-restore (iptables), nft (nftables),
#          ping with -M (iputils-ping), busybox httpd (busybox-static)
#   build: make, a Python >= 3.11 with venv/ensurepip and its shared libpython (PyInstaller),
#          objdump/objcopy (binutils), gcc (source builds where no wheel fits)
#   test:  conntrack (portmap's UDP flush), the reference plugins in /usr/lib/cni
#          (containernetworking-plugins: the differential oracle), socat (traffic peers),
#          strace (process-count and crash tests), setpriv (util-linux: capability-less
#          callers), containerd + runc (the real-runtime scenario), systemd-socket-activate
#          (systemd: the worker's socket activation)
set -eu

MODE=install
TARGET=demo
for arg in "$@"; do
    case "$arg" in
        demo|test) TARGET=$arg ;;
        --check) MODE=check ;;
        --print-python) MODE=print-python ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-deps: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

# The caller's PATH first (their python3 is the one `make` uses), the system dirs after it.
PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH

say() { echo "install-deps: $*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# The name of a Python >= 3.11 for the build venv: python3 when new enough, else a versioned one.
pick_python() {
    for py in python3 python3.13 python3.12 python3.11; do
        if have "$py" && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

if [ "$MODE" = print-python ]; then
    pick_python || { say "no Python >= 3.11 found (run this script without options as root)" >&2; exit 1; }
    exit 0
fi

MISSING=""
need() { # need <apt package>: add it once
    case " $MISSING " in *" $1 "*) ;; *) MISSING="${MISSING:+$MISSING }$1" ;; esac
}

UPDATED=""
install_missing() { # install $MISSING with apt-get (update first, once per run)
    if [ "$(id -u)" != 0 ]; then
        say "missing: $MISSING; run as root to install them"
        exit 1
    fi
    if ! have apt-get; then
        say "missing: $MISSING; this script installs with apt-get (Debian/Ubuntu) only"
        exit 1
    fi
    say "installing: $MISSING"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$UPDATED" ]; then
        apt-get update -qq
        UPDATED=1
    fi
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
    say "installed: $MISSING"
    MISSING=""
}

# Python first: the checks below run it (the demo runs with python3, the build venv with a
# Python >= 3.11, which python3 is on Debian 12 and Ubuntu 24.04).
if ! have python3; then
    need python3
    if [ "$MODE" = check ]; then
        say "missing: python3 (and whatever it would show missing after that)"
        exit 1
    fi
    install_missing
fi

have ip && have bridge || need iproute2
have iptables-save && have iptables-restore || need iptables
have nft || need nftables
# busybox's own ping has no -M (path MTU discovery), which the demo uses.
if ! have ping || ! ping -V 2>&1 | grep -qi iputils; then need iputils-ping; fi
if ! have busybox || ! busybox --list 2>/dev/null | grep -qx httpd; then need busybox-static; fi
have make || need make
have gcc || need gcc
have objdump && have objcopy || need binutils

python_needs() { # what Python $1 (>= 3.11) lacks for the build venv and PyInstaller
    ver=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    # venv: Debian and Ubuntu ship ensurepip for their Python in pythonX.Y-venv.
    if ! "$1" -m ensurepip --version >/dev/null 2>&1; then need "python$ver-venv"; fi
    case "$(command -v "$1")" in
        /usr/bin/*)
            if have dpkg-query && ! dpkg-query -W -f='${Status}' "python$ver-venv" 2>/dev/null | grep -q "ok installed"; then
                need "python$ver-venv"
            fi ;;
    esac
    # PyInstaller bundles the shared libpython; Debian and Ubuntu keep it in libpythonX.Y.
    if ! "$1" - <<'EOF' 2>/dev/null
import glob, os, sys, sysconfig
v = "%d.%d" % sys.version_info[:2]
multiarch = sysconfig.get_config_var("MULTIARCH") or ""
dirs = [sysconfig.get_config_var("LIBDIR") or "", "/usr/lib/" + multiarch, "/usr/lib", "/usr/local/lib"]
sys.exit(0 if any(glob.glob(os.path.join(d, "libpython%s*.so*" % v)) for d in dirs if d) else 1)
EOF
    then need "libpython$ver"; fi
}

PY=$(pick_python || true)
if [ -n "$PY" ]; then
    python_needs "$PY"
else
    # An older python3 (Ubuntu 22.04 has 3.10): add 3.11 beside it; build with
    # `make build PYTHON=$(sh scripts/install-deps.sh --print-python)`.
    need python3.11
    need python3.11-venv
    need libpython3.11
fi

if [ "$TARGET" = test ]; then
    have conntrack || need conntrack
    [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] \
        && [ -x /usr/lib/cni/loopback ] || need containernetworking-plugins
    have socat || need socat
    have strace || need strace
    have setpriv || need util-linux
    have containerd && have ctr || need containerd
    have runc || need runc
    have systemd-socket-activate || need systemd
fi

if [ -z "$MISSING" ]; then
    if [ "$TARGET" = test ]; then
        say "everything the build, the demo and the tests need is present"
    else
        say "everything the build and the demo need is present"
    fi
    exit 0
fi
if [ "$MODE" = check ]; then
    say "missing: $MISSING"
    exit 1
fi
install_missing
