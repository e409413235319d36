//! `icmp`: echo requests to a host. An unprivileged ICMP datagram socket
//! ("ping socket") where the kernel allows it (the process's group is in
//! net.ipv4.ping_group_range), else a raw socket, which needs CAP_NET_RAW.
//! When neither opens, the error says which permission is missing and how
//! to grant either.

use super::{failed, ms, resolve};
use cairn_wire::ProbeOutcome;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const PAYLOAD: &[u8; 16] = b"cairn-icmp-probe";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// The kernel strips the IP header and owns the identifier.
    Ping,
    /// Every ICMP packet on the host arrives, IPv4 with its header.
    Raw,
}

pub fn run(target: &str, count: u32, timeout: Duration) -> ProbeOutcome {
    let started = Instant::now();
    let ip = match resolve(target, 0, timeout) {
        Ok(a) => a[0].ip(),
        Err(e) => return failed(e),
    };
    let (sock, kind) = match open(ip) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let count = count.clamp(1, 10);
    let ident = (std::process::id() as u16) ^ 0x5a17;
    // Each echo gets an equal share of what is left of the timeout.
    let mut rtts = Vec::new();
    let mut last_error = None;
    for seq in 1..=count as u16 {
        let left = timeout.saturating_sub(started.elapsed());
        let budget = left / (count + 1 - u32::from(seq));
        if budget.is_zero() {
            break;
        }
        match echo(&sock, kind, ip, ident, seq, budget) {
            Ok(Some(rtt)) => rtts.push(rtt),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    let lost = count as usize - rtts.len();
    let mut out = ProbeOutcome {
        ok: !rtts.is_empty(),
        packet_loss_percent: Some(lost as f64 * 100.0 / count as f64),
        ..Default::default()
    };
    if rtts.is_empty() {
        out.error = Some(
            last_error.unwrap_or_else(|| format!("no echo reply from {ip} within {} s", timeout.as_secs())),
        );
    } else {
        let total: Duration = rtts.iter().sum();
        out.latency_ms = Some(ms(total / rtts.len() as u32));
    }
    out
}

/// Opens a ping socket, else a raw one, for `ip`'s family.
fn open(ip: IpAddr) -> Result<(UdpSocket, Kind), String> {
    let (family, proto) = match ip {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let ping = match socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, proto) {
        Ok(fd) => return Ok((UdpSocket::from(fd), Kind::Ping)),
        Err(e) => e,
    };
    let raw = match socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto) {
        Ok(fd) => return Ok((UdpSocket::from(fd), Kind::Raw)),
        Err(e) => e,
    };
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    Err(format!(
        "ICMP is not permitted to this process: a ping socket was refused ({ping}; group {} is \
         not in net.ipv4.ping_group_range \"{range}\") and a raw socket too ({raw}; it needs \
         CAP_NET_RAW). Allow either: sysctl net.ipv4.ping_group_range=\"0 2147483647\", or \
         give the service CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_RAW)",
        nix::unistd::getegid()
    ))
}

/// Internet checksum (RFC 1071); the kernel fills it in for ping sockets
/// and ICMPv6, a raw IPv4 socket needs it from us.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Sends one echo request and waits up to `budget` for its reply.
fn echo(
    sock: &UdpSocket,
    kind: Kind,
    ip: IpAddr,
    ident: u16,
    seq: u16,
    budget: Duration,
) -> Result<Option<Duration>, String> {
    let v6 = ip.is_ipv6();
    let sent = Instant::now();
    sock.send_to(&request(v6, ident, seq), SocketAddr::new(ip, 0))
        .map_err(|e| format!("sending an echo request to {ip}: {e}"))?;
    let mut buf = [0u8; 1500];
    loop {
        let left = budget.saturating_sub(sent.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(format!("waiting for the echo reply from {ip}: {e}")),
        };
        if from.ip() != ip {
            continue;
        }
        let icmp = match (kind, v6) {
            (Kind::Raw, false) => {
                let header = usize::from(buf[0] & 0x0f) * 4;
                buf.get(header..n).unwrap_or(&[])
            }
            _ => &buf[..n],
        };
        if icmp.len() < 8 {
            continue;
        }
        let reply_type = if v6 { 129 } else { 0 };
        let same_seq = icmp[6..8] == seq.to_be_bytes();
        // A ping socket's identifier is the kernel's; a raw socket sees
        // everyone's replies, so ours are told apart by it.
        let ours = kind == Kind::Ping || icmp[4..6] == ident.to_be_bytes();
        if icmp[0] == reply_type && same_seq && ours {
            return Ok(Some(sent.elapsed()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, complement 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        let p = request(false, 0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn echo_to_loopback() {
        let out = run("127.0.0.1", 2, Duration::from_secs(3));
        if let Some(e) = out
            .error
            .as_deref()
            .filter(|e| e.contains("not permitted to this process"))
        {
            println!("SKIPPED: neither a ping socket nor a raw socket may be opened here: {e}");
            return;
        }
        assert!(out.ok, "{out:?}");
        assert_eq!(out.packet_loss_percent, Some(0.0));
        assert!(out.latency_ms.is_some());
    }
}
