"""`cnitool doctor`: what is wrong with this node's CNI set-up, and the safe repairs.

One module per group of checks (conf, flannel, ipam, kernel, netfilter, portmap, overlay), each
exporting `CHECKS`: functions that take a `node.Node` (the facts, read once and shared) and
return one `report.Check`. `cli.run` runs them in the order of `cli.GROUPS`, prints the report
and, with `--fix`, applies the repairs the checks offered, then checks again.

Without `--fix` nothing on the node is changed: only files are read, netlink is dumped, and
read-only commands (iptables-save, nft list, ip, bridge) are run.
"""
