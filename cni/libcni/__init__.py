"""The runtime half of CNI (as containernetworking/cni's libcni): configuration lists, calling
plugins in order, the result cache and cnitool."""
