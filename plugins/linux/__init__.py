"""Linux plumbing shared by the plugins: one netlink stack (netlink.py core, rtnl.py socket,
links, addresses, routes), sysctls, firewall backends and batches, names. No spec logic here;
docs/linux-plumbing.md says where each concern lives."""
