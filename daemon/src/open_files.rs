//! The open-file limit, raised at start.
//!
//! Every HTTP connection costs cairnd two descriptors (tiny-http keeps a
//! reading and a writing handle of its socket), so the default cap of 512
//! connections alone needs 1,024: exactly the soft limit most systems give a
//! process, before SQLite's files, the listener and outbound checks. At
//! that limit the accept loop drops new clients (`EMFILE`). The hard limit,
//! which an unprivileged process may raise its soft limit to, is usually far
//! higher (systemd: 524,288), so the daemon asks for what it needs at start,
//! as most servers do.

/// Descriptors needed besides the connections': the database, its WAL and
/// shared memory (twice: the checkpoint thread has its own connection), the
/// listener, logs, and outbound checks and notifications in flight.
const BESIDES_CONNECTIONS: u64 = 256;

/// What the soft limit was and is now.
#[derive(Debug, PartialEq, Eq)]
pub struct Raised {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// `rlim_t` is 64 bits on the musl targets we ship, 32 on 32-bit glibc.
#[allow(clippy::unnecessary_cast)]
fn wide(v: libc::rlim_t) -> u64 {
    v as u64
}

/// (soft, hard) open-file limits of this process.
fn current() -> Result<(u64, u64), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "reading the open-file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((wide(lim.rlim_cur), wide(lim.rlim_max)))
}

/// The soft limit `max_connections` needs.
pub fn needed(max_connections: usize) -> u64 {
    (max_connections as u64).saturating_mul(2) + BESIDES_CONNECTIONS
}

/// Raises the soft open-file limit to `need`, or to the hard limit if that
/// is lower; never lowers it.
pub fn raise_to(need: u64) -> Result<Raised, String> {
    let (before, hard) = current()?;
    let want = need.min(hard);
    if before >= want {
        return Ok(Raised {
            before,
            now: before,
            hard,
        });
    }
    let lim = libc::rlimit {
        rlim_cur: want as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!(
            "raising the open-file limit from {before} to {want}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Raised {
        before,
        now: want,
        hard,
    })
}

/// At start: raise the limit for `max_connections`, and say so if the hard
/// limit leaves it short (the cap then cannot be reached).
pub fn prepare(max_connections: usize) {
    let need = needed(max_connections);
    match raise_to(need) {
        Ok(r) if r.now < need => log::warn!(
            "the open-file limit is {} (hard limit {}), but {max_connections} connections need {need}: \
             raise LimitNOFILE or lower max_connections",
            r.now,
            r.hard
        ),
        Ok(r) if r.now > r.before => log::debug!("open-file limit raised from {} to {}", r.before, r.now),
        Ok(_) => {}
        Err(e) => log::warn!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_need_capped_by_the_hard_limit_and_never_falls() {
        let (soft, hard) = current().unwrap();
        // Lower the soft limit a little, so that there is room to raise it
        // whatever this machine's limits are (other tests in this process
        // keep far fewer files open).
        let lowered = soft.min(hard).saturating_sub(8).max(64);
        let lim = libc::rlimit {
            rlim_cur: lowered as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);

        let r = raise_to(lowered + 4).unwrap();
        assert_eq!((r.before, r.now, r.hard), (lowered, lowered + 4, hard));
        assert_eq!(current().unwrap().0, lowered + 4);

        // Asking for less changes nothing.
        let r = raise_to(lowered).unwrap();
        assert_eq!((r.before, r.now), (lowered + 4, lowered + 4));

        // Asking for more than the hard limit stops at it.
        let r = raise_to(u64::MAX).unwrap();
        assert_eq!(r.now, hard);
        assert_eq!(current().unwrap(), (hard, hard));
    }

    #[test]
    fn the_default_cap_needs_more_than_the_usual_soft_limit() {
        assert_eq!(needed(512), 1280);
        assert_eq!(needed(0), BESIDES_CONNECTIONS);
    }
}
