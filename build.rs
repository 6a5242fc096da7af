//! Build-time facts for `camhub --version`: the git commit it was built from and
//! libjpeg-turbo's version (TurboJPEG 2.x has no call that reports it at run time).
//!
//! The commit is `git rev-parse --short HEAD` when building in a checkout,
//! `CAMHUB_GIT_COMMIT` when set (a build from a tarball that knows its commit),
//! else `unknown`. `-dirty` marks tracked files that differ from that commit.
//! The script reruns when HEAD, the branch it points to or `src/` changes, not on
//! every build (a change of commit rebuilds the crate once).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CAMHUB_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let commit = match std::env::var("CAMHUB_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => git_commit(&dir).unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=CAMHUB_GIT_COMMIT={commit}");
    // The headers this build compiled against are those of the library it links
    // (Debian's libturbojpeg0-dev beside libturbojpeg0).
    let turbojpeg = output(&dir, "pkg-config", &["--modversion", "libturbojpeg"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CAMHUB_TURBOJPEG_VERSION={turbojpeg}");
}

/// `abc1234` or `abc1234-dirty`; None outside a git checkout or without git.
fn git_commit(dir: &Path) -> Option<String> {
    // Only camhub's own checkout: a source tarball unpacked inside some other
    // repository must not take that repository's commit.
    let top = output(dir, "git", &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let hash = output(dir, "git", &["rev-parse", "--short", "HEAD"])?;
    // Rerun when HEAD moves: its file (a worktree has its own), the branch's ref
    // file and packed-refs (in the common dir), and the sources that make it dirty.
    let git_dir = output(dir, "git", &["rev-parse", "--git-dir"]).map(|d| dir.join(d));
    let common = output(dir, "git", &["rev-parse", "--git-common-dir"]).map(|d| dir.join(d));
    let branch = output(dir, "git", &["rev-parse", "--symbolic-full-name", "HEAD"]);
    let mut watch = vec![dir.join("src"), dir.join("Cargo.toml")];
    if let Some(g) = &git_dir {
        watch.push(g.join("HEAD"));
    }
    if let Some(c) = &common {
        watch.push(c.join("packed-refs"));
        if let Some(b) = branch.as_deref().filter(|b| b.starts_with("refs/")) {
            watch.push(c.join(b));
        }
    }
    // A path that does not exist would rerun the script on every build.
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let dirty = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .current_dir(dir)
        .status()
        .is_ok_and(|s| s.code() == Some(1));
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// A command's trimmed stdout, if it ran and succeeded with some.
fn output(dir: &Path, cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).current_dir(dir).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}
