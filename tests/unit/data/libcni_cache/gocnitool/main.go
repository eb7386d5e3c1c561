// gocnitool: a minimal driver of the reference Go libcni, used only to produce golden cache
// files for the Python runtime's byte-compatibility tests.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) < 7 {
		fmt.Fprintln(os.Stderr, "usage: gocnitool add|del|check <confdir> <net> <containerid> <netns> <ifname>")
		os.Exit(2)
	}
	cmd, dir, name, cid, netns, ifname := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	list, err := libcni.LoadConfList(dir, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rt := &libcni.RuntimeConf{ContainerID: cid, NetNS: netns, IfName: ifname}
	if v := os.Getenv("CAP_ARGS"); v != "" {
		if err := json.Unmarshal([]byte(v), &rt.CapabilityArgs); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if v := os.Getenv("RT_ARGS"); v != "" {
		for _, p := range strings.Split(v, ";") {
			kv := strings.SplitN(p, "=", 2)
			rt.Args = append(rt.Args, [2]string{kv[0], kv[1]})
		}
	}
	c := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CACHE_DIR"), nil)
	switch cmd {
	case "add":
		res, err := c.AddNetworkList(context.TODO(), list, rt)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = res.Print()
	case "del":
		err = c.DelNetworkList(context.TODO(), list, rt)
	case "check":
		err = c.CheckNetworkList(context.TODO(), list, rt)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
