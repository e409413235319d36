//! `tcp`: host:port accepts a connection.

use super::{failed, host_port, ms, resolve};
use cairn_wire::ProbeOutcome;
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub fn run(target: &str, timeout: Duration) -> ProbeOutcome {
    let Some((host, port)) = host_port(target) else {
        return failed(format!("'{target}' is not host:port"));
    };
    let started = Instant::now();
    let addrs = match resolve(host, port, timeout) {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let connected = Instant::now();
    match TcpStream::connect_timeout(&addrs[0], left) {
        Ok(_) => ProbeOutcome {
            ok: true,
            latency_ms: Some(ms(connected.elapsed())),
            ..Default::default()
        },
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            failed(format!(
                "connecting to {target}: timed out after {} s",
                timeout.as_secs()
            ))
        }
        Err(e) => failed(format!("connecting to {target}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_closed_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap().to_string();
        assert!(run(&open, Duration::from_secs(2)).ok);
        drop(l);
        let out = run(&open, Duration::from_secs(2));
        assert!(!out.ok);
        assert!(out.error.unwrap().contains("refused"));
    }
}
