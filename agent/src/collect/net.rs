//! Network interfaces from `/proc/net/dev` (parsed by procfs): rates from
//! deltas plus the kernel's cumulative counters.
//!
//! Kept: physical NICs, wlan, bonds, VLANs, bridges a host routes through
//! (br0, vmbr0), and tunnels a user set up (wg*, tun*, tailscale0, zt*).
//! Skipped: loopback and the per-container/per-VM plumbing that comes and goes
//! with workloads (veth, docker0 and br-* Docker bridges, libvirt virbr/vnet,
//! tap, Proxmox fw*, Kubernetes CNI devices) and the kernel's idle tunnel
//! endpoints (sit0, tunl0, ...). Their traffic is already counted on the real
//! NIC, and their churn would make the node's series list grow without end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_wire::{NetIf, Snapshot};
use procfs::FromBufRead;

use super::{read, round2, Collector};

const SKIP_PREFIXES: &[&str] = &[
    "veth", "docker", "br-", "virbr", "vnet", "tap", "fwbr", "fwpr", "fwln", "cali", "flannel", "cni",
    "kube-", "cilium", "lxc", "vxlan", "genev", "ifb", "dummy",
];
const SKIP_EXACT: &[&str] = &[
    "lo",
    "sit0",
    "tunl0",
    "ip6tnl0",
    "gre0",
    "gretap0",
    "erspan0",
    "ip_vti0",
    "ip6_vti0",
    "ip6gre0",
    "teql0",
    "bonding_masters",
];

fn is_skipped(name: &str) -> bool {
    SKIP_EXACT.contains(&name) || SKIP_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counters {
    rx: u64,
    tx: u64,
    rx_errors: u64,
    tx_errors: u64,
}

struct Reading {
    at: Instant,
    ifs: Vec<(String, Counters)>,
}

pub struct Net {
    path: PathBuf,
    prev: Option<Reading>,
}

impl Net {
    pub fn new(proc_root: &Path) -> Self {
        Net {
            path: proc_root.join("net/dev"),
            prev: None,
        }
    }

    fn read(&self) -> Result<Reading, String> {
        let text = read(&self.path)?;
        let at = Instant::now();
        let ifs = parse(&text).map_err(|e| format!("parsing {}: {e}", self.path.display()))?;
        Ok(Reading { at, ifs })
    }
}

impl Collector for Net {
    fn name(&self) -> &'static str {
        "net"
    }

    fn prime(&mut self) {
        self.prev = self.read().ok();
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let cur = self.read()?;
        out.net = rates(self.prev.as_ref(), &cur);
        self.prev = Some(cur);
        Ok(())
    }
}

fn parse(text: &str) -> Result<Vec<(String, Counters)>, String> {
    let all =
        procfs::net::InterfaceDeviceStatus::from_buf_read(text.as_bytes()).map_err(|e| e.to_string())?;
    let mut ifs: Vec<(String, Counters)> = all
        .0
        .into_values()
        .filter(|d| !is_skipped(&d.name))
        .map(|d| {
            (
                d.name,
                Counters {
                    rx: d.recv_bytes,
                    tx: d.sent_bytes,
                    rx_errors: d.recv_errs,
                    tx_errors: d.sent_errs,
                },
            )
        })
        .collect();
    ifs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(ifs)
}

fn rates(prev: Option<&Reading>, cur: &Reading) -> Vec<NetIf> {
    let before: HashMap<&str, (Counters, Instant)> = prev
        .map(|p| p.ifs.iter().map(|(n, c)| (n.as_str(), (*c, p.at))).collect())
        .unwrap_or_default();
    cur.ifs
        .iter()
        .map(|(name, now)| {
            // A new interface (USB NIC plugged, VPN up) has no rate yet.
            let (then, at) = before.get(name.as_str()).copied().unwrap_or((*now, cur.at));
            let secs = cur.at.duration_since(at).as_secs_f64();
            NetIf {
                interface: name.clone(),
                rx_bytes_per_s: round2(super::rate(then.rx, now.rx, secs)),
                tx_bytes_per_s: round2(super::rate(then.tx, now.tx, secs)),
                rx_bytes_total: now.rx,
                tx_bytes_total: now.tx,
                rx_errors: now.rx_errors,
                tx_errors: now.tx_errors,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NETDEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 3193 29 0 0 0 0 0 0 3193 29 0 0 0 0 0 0
  eth0: 319118179 12438 3 0 0 0 0 0 790475 9339 1 0 0 0 0 0
 wlan0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
docker0: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0
vethab12cd: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0
br-1234abcd: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0
   wg0: 700 7 0 0 0 0 0 0 800 8 0 0 0 0 0 0
 bond0: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
eth0.10: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
 vmbr0: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
tap100i0: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
cali123: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
flannel.1: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
  tun0: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
  sit0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
";

    #[test]
    fn virtual_plumbing_is_skipped_and_real_links_kept() {
        let ifs = parse(NETDEV).unwrap();
        let names: Vec<&str> = ifs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["bond0", "eth0", "eth0.10", "tun0", "vmbr0", "wg0", "wlan0"]
        );
        let eth0 = &ifs[1].1;
        assert_eq!(eth0.rx, 319118179);
        assert_eq!(eth0.tx, 790475);
        assert_eq!(eth0.rx_errors, 3);
        assert_eq!(eth0.tx_errors, 1);
    }

    #[test]
    fn rates_handle_resets_and_new_interfaces() {
        let t0 = Instant::now();
        let c = |rx, tx| Counters {
            rx,
            tx,
            ..Counters::default()
        };
        let a = Reading {
            at: t0,
            ifs: vec![("eth0".into(), c(1000, 5000))],
        };
        let b = Reading {
            at: t0 + Duration::from_secs(4),
            ifs: vec![("eth0".into(), c(5000, 100)), ("wg0".into(), c(77, 88))],
        };
        let r = rates(Some(&a), &b);
        assert_eq!(r[0].rx_bytes_per_s, 1000.0);
        assert_eq!(r[0].tx_bytes_per_s, 0.0, "counter reset is 0, not negative");
        assert_eq!(r[0].tx_bytes_total, 100);
        assert_eq!(r[1].interface, "wg0");
        assert_eq!(r[1].rx_bytes_per_s, 0.0);
        assert_eq!(r[1].rx_bytes_total, 77);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("h1\nh2\neth0: x y z\n").is_err());
        assert!(parse("h1\nh2\n").unwrap().is_empty());
    }
}
