//! One writer per ring name across processes: the writer holds `flock(LOCK_EX)`
//! on `<ring>.lock` (beside the ring, whose own flock is the readers' presence
//! protocol, docs/shm.md) with its PID inside, so a second hub with the same
//! camera and output names is refused, naming the live owner, instead of
//! silently replacing the ring. Writers in one process (a camera replaced by a
//! config reload) share the one lock.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use rustix::fs::{FlockOperation, flock};

/// The locks this process holds, by lock file path.
static HELD: LazyLock<Mutex<HashMap<PathBuf, Weak<Owner>>>> = LazyLock::new(Default::default);

/// Ownership of a ring name; released (and the lock file removed) when the last
/// writer of this process that shares it is dropped.
#[derive(Debug)]
pub struct Owner {
    path: PathBuf,
    _file: File,
}

pub fn lock_path(ring: &Path) -> PathBuf {
    let mut p = ring.to_path_buf().into_os_string();
    p.push(".lock");
    p.into()
}

/// Takes the ring's name for this process, or says which live process has it.
pub fn acquire(ring: &Path, perms: u32) -> io::Result<Arc<Owner>> {
    let path = lock_path(ring);
    let mut held = HELD.lock();
    if let Some(o) = held.get(&path).and_then(Weak::upgrade) {
        return Ok(o);
    }
    let mut tries = 0;
    loop {
        let mut file = OpenOptions::new().read(true).write(true).create(true).mode(perms).open(&path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let pid = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                if pid == Some(std::process::id()) && tries < 100 {
                    // Our own last writer of this name is being dropped: it lets go at once.
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                let who = pid.map_or_else(|| "another process".to_owned(), |p| format!("another hub (pid {p})"));
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{} is in use by {who}: give this camera or output another name", ring.display()),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        // The previous owner removes the name while it holds the lock: a lock taken
        // on a file no longer under that name owns nothing, so open it again.
        let same = |m: std::fs::Metadata| file.metadata().is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev());
        if !std::fs::metadata(&path).is_ok_and(same) {
            continue;
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        let owner = Arc::new(Owner { path: path.clone(), _file: file });
        held.retain(|_, w| w.strong_count() > 0);
        held.insert(path, Arc::downgrade(&owner));
        return Ok(owner);
    }
}

impl Drop for Owner {
    /// Removes the name while still locked (the file closes, and unlocks, after).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
