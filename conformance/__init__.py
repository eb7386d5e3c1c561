"""Black-box conformance suite for a directory of CNI executables.

`python -m conformance --cni-bin DIR [--reference DIR] [-k PATTERN]` runs the cases under
`conformance/cases/` against DIR from the outside, through the CNI protocol only, so the same
suite runs against our executables (dist/bin) and against the Go reference (/usr/lib/cni).
Running it against the reference is what proves the suite itself right; the known reference
differences live in one place, `conformance/deviations.py`.
"""
