//! `dns`: the name resolves through the system resolver (getaddrinfo, or
//! musl's resolver in the static builds), to an address of the asked
//! family, and to every expected address if any are given.

use super::{failed, ms, resolve};
use cairn_wire::{DnsOptions, ProbeOutcome};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub fn run(name: &str, o: &DnsOptions, timeout: Duration) -> ProbeOutcome {
    let started = Instant::now();
    let addrs = match resolve(name, 0, timeout) {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let latency = ms(started.elapsed());
    let mut ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    ips.sort();
    ips.dedup();
    let family = o.record_type.as_deref().unwrap_or("any");
    let wanted: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| match family {
            "A" => ip.is_ipv4(),
            "AAAA" => ip.is_ipv6(),
            _ => true,
        })
        .collect();
    let mut out = ProbeOutcome {
        ok: true,
        latency_ms: Some(latency),
        addresses: ips.iter().map(IpAddr::to_string).collect(),
        ..Default::default()
    };
    if wanted.is_empty() {
        out.ok = false;
        out.error = Some(format!("{name} has no {family} record"));
        return out;
    }
    let missing: Vec<&str> = o
        .expected
        .iter()
        .filter(|e| e.parse::<IpAddr>().map_or(true, |ip| !wanted.contains(&ip)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        out.ok = false;
        out.error = Some(format!("{name} does not resolve to {}", missing.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_resolves_and_expected_addresses_are_checked() {
        let t = Duration::from_secs(5);
        let any = run("localhost", &DnsOptions::default(), t);
        assert!(any.ok, "{any:?}");
        assert!(!any.addresses.is_empty());
        let ip = run("127.0.0.1", &DnsOptions::default(), t);
        assert_eq!(ip.addresses, vec!["127.0.0.1".to_string()]);
        let want = |record: &str, expected: &[&str]| DnsOptions {
            record_type: Some(record.into()),
            expected: expected.iter().map(|s| s.to_string()).collect(),
        };
        assert!(run("127.0.0.1", &want("A", &["127.0.0.1"]), t).ok);
        let wrong = run("127.0.0.1", &want("A", &["10.9.9.9"]), t);
        assert!(!wrong.ok);
        assert!(wrong.error.unwrap().contains("10.9.9.9"));
        let family = run("127.0.0.1", &want("AAAA", &[]), t);
        assert!(!family.ok);
        assert!(family.error.unwrap().contains("no AAAA record"));
    }

    #[test]
    fn a_name_that_does_not_exist_fails() {
        let out = run(
            "no-such-host.invalid",
            &DnsOptions::default(),
            Duration::from_secs(5),
        );
        assert!(!out.ok);
        assert!(out.error.is_some());
    }
}
